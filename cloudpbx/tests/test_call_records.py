"""Toll-free call records: the table, the journal and its ingester (issue 5 part 6).

Nothing lost, nothing doubled: records appended are ingested once; a new ingester on the
same files (the state a crash leaves) replays only what was not ingested; a torn last
line waits for its newline; and a real `kill -9` of a process appending through
`JournalSink` loses none of the records it wrote. Store tests run on both backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
from cloudpbx.models import TollFreeCallRecordRow
from cloudpbx.recordjournal import (
    JournalIngester,
    JournalSink,
    decode_record,
    encode_record,
    offset_path_for,
)

from .conftest import REPOSITORY_ROOT

START = 1_800_000_000.0


def make_record(
    index: int,
    category: TollFreeCategory = TollFreeCategory.CONNECTED,
    destination: str | None = "0312340001",
    arrival: float = START,
    number: str = "0120000111",
) -> TollFreeCallRecord:
    answered = category is TollFreeCategory.CONNECTED
    return TollFreeCallRecord(
        call_id=f"call-{index}@example.test",
        tollfree_number=number,
        tenant_name="demo",
        caller="0312345678",
        destination=destination,
        category=category,
        final_status=200 if answered else 486,
        arrival_time=arrival + index,
        answer_time=arrival + index + 2 if answered else None,
        end_time=arrival + index + 30,
    )


def stored_call_ids(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(TollFreeCallRecordRow.call_id)))


# --- the table ------------------------------------------------------------------------


def test_the_table_has_its_index_and_unique_call_id(engine: Engine) -> None:
    inspector = inspect(engine)
    indexes = {index["name"] for index in inspector.get_indexes("tollfree_call_record")}
    assert "ix_tollfree_call_record_tollfree_number_arrival_time" in indexes
    uniques = {
        constraint["name"]
        for constraint in inspector.get_unique_constraints("tollfree_call_record")
    }
    assert "uq_tollfree_call_record_call_id" in uniques


def test_the_category_is_checked(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tollfree_call_record (call_id, tollfree_number, tenant_name, caller,"
                " category, final_status, arrival_time, end_time)"
                " VALUES ('x', '0120000111', 'demo', '03', 'lost', 200, 1.0, 2.0)"
            )
        )


# --- encoding -------------------------------------------------------------------------


def test_a_record_round_trips_through_one_line() -> None:
    record = make_record(1, TollFreeCategory.ABANDONED, destination=None)
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_record(line[:-1]) == record


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1]", b'{"call_id": 1}', b'{"call_id": "a", "category": "lost"}'],
)
def test_a_malformed_line_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(line)


# --- the ingester ---------------------------------------------------------------------


def test_records_are_ingested_once(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    sink = JournalSink(journal)
    ingester = JournalIngester(journal, engine, sink)
    for index in range(5):
        sink.record(make_record(index))
    assert ingester.ingest_available() == 5
    assert ingester.ingest_available() == 0
    sink.record(make_record(5))
    assert ingester.ingest_available() == 1
    assert sorted(stored_call_ids(engine)) == sorted(f"call-{i}@example.test" for i in range(6))
    assert sink.counters["records"] == 6
    assert ingester.counters["ingested"] == 6
    assert offset_path_for(journal).read_text().strip() == str(journal.stat().st_size)
    sink.close()


def test_a_new_ingester_replays_only_what_was_left(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    sink = JournalSink(journal)
    for index in range(3):
        sink.record(make_record(index))
    assert JournalIngester(journal, engine).ingest_available() == 3
    for index in range(3, 7):
        sink.record(make_record(index))
    # The first ingester is gone (a crash): a new one on the same files.
    replaying = JournalIngester(journal, engine)
    assert replaying.ingest_available() == 4
    assert len(stored_call_ids(engine)) == 7
    sink.close()


def test_a_lost_offset_reads_again_and_doubles_nothing(tmp_path: Path, engine: Engine) -> None:
    # A crash after the commit but before the offset was written.
    journal = tmp_path / "records.jsonl"
    sink = JournalSink(journal)
    for index in range(4):
        sink.record(make_record(index))
    JournalIngester(journal, engine).ingest_available()
    offset_path_for(journal).unlink()
    replaying = JournalIngester(journal, engine)
    assert replaying.ingest_available() == 0
    assert replaying.counters["duplicates"] == 4
    assert len(stored_call_ids(engine)) == 4
    sink.close()


def test_a_torn_last_line_waits_for_its_newline(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    whole = encode_record(make_record(1))
    torn = encode_record(make_record(2))
    journal.write_bytes(whole + torn[:20])
    ingester = JournalIngester(journal, engine)
    assert ingester.ingest_available() == 1
    assert ingester.offset == len(whole)
    with journal.open("ab") as appending:
        appending.write(torn[20:])
    assert ingester.ingest_available() == 1
    assert len(stored_call_ids(engine)) == 2


def test_a_sink_terminates_a_torn_line_it_finds(tmp_path: Path, engine: Engine) -> None:
    # A line torn by an earlier process: the next one's records stay whole.
    journal = tmp_path / "records.jsonl"
    journal.write_bytes(encode_record(make_record(1)) + b'{"call_id": "to')
    sink = JournalSink(journal)
    sink.record(make_record(2))
    ingester = JournalIngester(journal, engine)
    assert ingester.ingest_available() == 2
    assert ingester.counters["malformed"] == 1
    assert sink.counters["torn_lines_terminated"] == 1
    sink.close()


def test_malformed_lines_are_skipped(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    journal.write_bytes(b"garbage\n" + encode_record(make_record(1)) + b"\xff\xfe\n")
    ingester = JournalIngester(journal, engine)
    assert ingester.ingest_available() == 1
    assert ingester.counters["malformed"] == 2


def test_a_store_failure_keeps_the_offset(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    sink = JournalSink(journal)
    sink.record(make_record(1))
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE tollfree_call_record RENAME TO hidden"))
    ingester = JournalIngester(journal, engine)
    assert ingester.ingest_available() == 0
    assert ingester.counters["store_failures"] == 1
    assert ingester.offset == 0
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE hidden RENAME TO tollfree_call_record"))
    assert ingester.ingest_available() == 1
    sink.close()


def test_a_consumed_journal_is_rotated(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    sink = JournalSink(journal)
    ingester = JournalIngester(journal, engine, sink, rotate_bytes=100)
    for index in range(3):
        sink.record(make_record(index))
    assert ingester.ingest_available() == 3
    assert ingester.counters["rotations"] == 1
    assert journal.stat().st_size == 0 and ingester.offset == 0
    sink.record(make_record(3))
    assert JournalIngester(journal, engine).ingest_available() == 1
    assert len(stored_call_ids(engine)) == 4
    sink.close()


def test_an_offset_beyond_the_journal_reads_from_the_start(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    journal.write_bytes(encode_record(make_record(1)))
    offset_path_for(journal).write_text("999999\n")
    assert JournalIngester(journal, engine).ingest_available() == 1


def test_the_thread_ingests_and_stop_ingests_the_rest(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    sink = JournalSink(journal)
    ingester = JournalIngester(journal, engine, sink, poll_seconds=0.05)
    sink.record(make_record(0))
    ingester.start()
    deadline = time.monotonic() + 10
    while ingester.counters["ingested"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ingester.counters["ingested"] == 1
    ingester._poll_seconds = 3600  # the final ingest must come from stop()
    time.sleep(0.1)
    sink.record(make_record(1))
    ingester.stop()
    assert len(stored_call_ids(engine)) == 2
    sink.close()


def test_a_closed_sink_counts_instead_of_raising(tmp_path: Path) -> None:
    sink = JournalSink(tmp_path / "records.jsonl")
    sink.close()
    sink.record(make_record(1))
    assert sink.counters["write_failures"] == 1


# --- a real kill -9 -------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys, time
    from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
    from cloudpbx.recordjournal import JournalSink

    sink = JournalSink(sys.argv[1])
    count = int(sys.argv[2])
    for index in range(count):
        sink.record(TollFreeCallRecord(
            call_id=f"killed-{index}", tollfree_number="0120000111", tenant_name="demo",
            caller="0312345678", destination="0312340001",
            category=TollFreeCategory.CONNECTED, final_status=200,
            arrival_time=1.8e9 + index, answer_time=1.8e9 + index + 1,
            end_time=1.8e9 + index + 9,
        ))
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_no_record_is_lost_to_a_kill_9(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    count = 2000
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(journal), str(count)],
        stdout=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "written"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    assert writer.returncode == -signal.SIGKILL
    ingester = JournalIngester(journal, engine)
    assert ingester.ingest_available() == count
    with engine.connect() as connection:
        stored = connection.scalar(select(func.count()).select_from(TollFreeCallRecordRow))
    assert stored == count
    assert ingester.counters["malformed"] == 0


_ENDLESS_WRITER = textwrap.dedent(
    """
    import sys
    from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
    from cloudpbx.recordjournal import JournalSink

    sink = JournalSink(sys.argv[1])
    index = 0
    while True:
        sink.record(TollFreeCallRecord(
            call_id=f"killed-{index}", tollfree_number="0120000111", tenant_name="demo",
            caller="anonymous", destination=None,
            category=TollFreeCategory.OUT_OF_AREA, final_status=403,
            arrival_time=1.8e9 + index, answer_time=None, end_time=1.8e9 + index,
        ))
        index += 1
        if index % 500 == 0:
            print(index, flush=True)
    """
)


def test_a_kill_9_while_writing_loses_no_completed_record(tmp_path: Path, engine: Engine) -> None:
    journal = tmp_path / "records.jsonl"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _ENDLESS_WRITER, str(journal)],
        stdout=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert writer.stdout is not None
        reported = 0
        while reported < 3000:
            reported = int(writer.stdout.readline())
    finally:
        writer.send_signal(signal.SIGKILL)  # in the middle of writing
        writer.wait(10)
    ingester = JournalIngester(journal, engine)
    ingested = ingester.ingest_available()
    # Every record `record()` returned for (at least the reported ones) is there, once,
    # and they are exactly the first ones: no hole.
    assert ingested >= reported
    assert set(stored_call_ids(engine)) == {f"killed-{index}" for index in range(ingested)}
    assert ingester.counters["malformed"] == 0
