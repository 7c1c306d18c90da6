"""Toll-free call records, kept off the call path: an append-only journal, ingested behind.

`JournalSink` is the `CallRecordSink` the switch writes to on its event loop;
`JournalIngester` copies the journal's records into `tollfree_call_record` on a thread
of its own. Together they keep every finished call's record across a `kill -9` of the
switch (issue 5 part 6).

Rules:
- The journal is a file of JSON lines, one record each (`encode_record`). `record()`
  appends one whole line with a single `os.write` on a file descriptor opened with
  `O_APPEND`: no SQL, no fsync, no buffering in the process. Once `os.write` returned,
  the kernel holds the line: a `kill -9` of the process right after loses nothing. Power
  loss or a kernel crash may lose the lines written since the kernel last flushed the
  page cache (seconds): that is out of scope, as it is for the store's own SQLite file
  without `synchronous=FULL`.
- `record()` never raises: a record that cannot be encoded or written is counted
  (`encode_failures`, `write_failures`) and logged once per kind of failure, and the
  call goes on. A short write (disk full) is terminated by a newline, so the next line
  is whole again; a journal whose last line is torn when it is opened is terminated the
  same way.
- The ingester reads only complete lines (up to the last newline) from the offset it
  remembers, inserts them with `ON CONFLICT (call_id) DO NOTHING` in one transaction per
  batch, and only then writes the new offset (a small file next to the journal,
  replaced atomically). A crash anywhere in between re-reads some lines on the next
  start and inserts nothing twice: nothing lost, nothing doubled. A torn last line is
  left where it is until its newline arrives.
- Memory is bounded: at most `_CHUNK_BYTES` of the journal are read at a time; a line
  longer than that is no record and is skipped (counted `malformed`), as is any line
  that is not a valid record.
- A failure of the store (down, locked) leaves the offset where it was: the same lines
  are tried again at the next poll, and counted `store_failures`.
- Rotation: when the ingester has consumed the whole journal and it is larger than
  `rotate_bytes`, it truncates it in place through the sink (under the sink's lock, so
  no line is appended between the check and the truncation) and resets the offset in
  the same locked step. An offset beyond the end of the journal (a crash between the two
  steps, or a journal truncated by hand) is read as 0: re-reading is harmless.
- `stop()` wakes the thread, joins it, and ingests once more, so a clean shutdown leaves
  nothing in the journal that is not in the store.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
from cloudpbx.models import TollFreeCallRecordRow

__all__ = [
    "JOURNAL_FILE_NAME",
    "JournalIngester",
    "JournalSink",
    "decode_record",
    "encode_record",
    "offset_path_for",
]

logger = logging.getLogger("cloudpbx.recordjournal")

JOURNAL_FILE_NAME = "tollfree-call-records.jsonl"
"""The journal's name in a data directory (`softswitch run` puts it next to the store)."""
_CHUNK_BYTES = 1 << 20
"""At most this much of the journal is read (and held) at a time."""
_DEFAULT_POLL_SECONDS = 1.0
_DEFAULT_ROTATE_BYTES = 64 << 20
_STOP_TIMEOUT_SECONDS = 30.0

_STRING_LIMITS = {
    "call_id": 256,
    "tollfree_number": 16,
    "tenant_name": 64,
    "caller": 64,
    "destination": 64,
}
"""Column lengths of `tollfree_call_record`: longer texts are cut, never refused."""


def encode_record(call_record: TollFreeCallRecord) -> bytes:
    """One journal line: the record as compact JSON, then a newline."""
    text = json.dumps(asdict(call_record), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _text(data: dict[str, Any], key: str, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value[: _STRING_LIMITS[key]]


def _number(data: dict[str, Any], key: str, optional: bool = False) -> float | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} is not a number")
    return float(value)


def decode_record(line: bytes) -> TollFreeCallRecord:
    """The record of one journal line (without its newline).

    Raises:
        ValueError: the line is no valid record.
    """
    data = json.loads(line.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    status = data.get("final_status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise ValueError("final_status is not an integer")
    call_id = _text(data, "call_id")
    number = _text(data, "tollfree_number")
    tenant = _text(data, "tenant_name")
    caller = _text(data, "caller")
    arrival = _number(data, "arrival_time")
    end = _number(data, "end_time")
    assert call_id is not None and number is not None and tenant is not None
    assert caller is not None and arrival is not None and end is not None
    return TollFreeCallRecord(
        call_id=call_id,
        tollfree_number=number,
        tenant_name=tenant,
        caller=caller,
        destination=_text(data, "destination", optional=True),
        category=TollFreeCategory(str(data.get("category"))),
        final_status=status,
        arrival_time=arrival,
        answer_time=_number(data, "answer_time", optional=True),
        end_time=end,
    )


def offset_path_for(journal_path: Path) -> Path:
    """Where the ingester keeps how far it has ingested `journal_path`."""
    return journal_path.with_name(journal_path.name + ".offset")


class JournalSink:
    """A `CallRecordSink` appending to the journal at `path` (module rules)."""

    def __init__(self, path: Path | str) -> None:
        """Open (create) the journal; a torn last line is terminated.

        Raises:
            OSError: the journal cannot be opened.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lock = threading.Lock()
        """Held for each append and for a rotation (`truncate_if_consumed`)."""
        self.counters: collections.Counter[str] = collections.Counter()
        self._logged: set[str] = set()
        self._terminate_torn_line()

    def _terminate_torn_line(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as journal:
            journal.seek(size - 1)
            if journal.read(1) != b"\n":
                os.write(self._fd, b"\n")
                self.counters["torn_lines_terminated"] += 1

    def _failed(self, kind: str, error: Exception) -> None:
        self.counters[kind] += 1
        if kind not in self._logged:
            self._logged.add(kind)
            logger.error("call record journal %s: %s: %s", self.path, kind, error)

    def record(self, call_record: TollFreeCallRecord) -> None:
        """Append `call_record` as one line; never raises (module rules)."""
        try:
            line = encode_record(call_record)
        except (TypeError, ValueError) as error:
            self._failed("encode_failures", error)
            return
        try:
            with self._lock:
                written = os.write(self._fd, line)
                if written != len(line):
                    os.write(self._fd, b"\n")
                    raise OSError(f"short write: {written} of {len(line)} bytes")
        except OSError as error:
            self._failed("write_failures", error)
            return
        self.counters["records"] += 1

    def truncate_if_consumed(self, offset: int, reset: Callable[[], None]) -> bool:
        """Truncate the journal if it ends at `offset`, calling `reset()` (which must
        record the offset 0) before any other line is appended. Whether it truncated."""
        with self._lock:
            if os.fstat(self._fd).st_size != offset:
                return False
            os.ftruncate(self._fd, 0)
            reset()
            return True

    def close(self) -> None:
        """Close the journal; later records count as `write_failures`."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class JournalIngester:
    """Copies the journal's records into the store, on a thread of its own (module rules)."""

    def __init__(
        self,
        path: Path | str,
        engine: Engine,
        sink: JournalSink | None = None,
        poll_seconds: float = _DEFAULT_POLL_SECONDS,
        rotate_bytes: int = _DEFAULT_ROTATE_BYTES,
    ) -> None:
        """
        Args:
            path: the journal (it need not exist yet).
            engine: the migrated store.
            sink: the process's sink on the same journal, for rotation; None: never rotate.
            poll_seconds: how often the thread looks for new lines.
            rotate_bytes: truncate a consumed journal larger than this (through `sink`).
        """
        self.path = Path(path)
        self.offset_path = offset_path_for(self.path)
        self._engine = engine
        self._sink = sink
        self._poll_seconds = poll_seconds
        self._rotate_bytes = rotate_bytes
        self.counters: collections.Counter[str] = collections.Counter()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ingest_lock = threading.Lock()
        """One ingest at a time (the thread's and `stop`'s final one)."""
        self.offset = self._read_offset()

    # --- the offset ----------------------------------------------------------------------

    def _read_offset(self) -> int:
        try:
            return max(0, int(self.offset_path.read_text(encoding="ascii").strip() or "0"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as error:
            # Re-reading from the start inserts nothing twice (module rules).
            logger.warning("call record offset %s unreadable (%s): from 0", self.offset_path, error)
            return 0

    def _write_offset(self, offset: int) -> None:
        temporary = self.offset_path.with_name(self.offset_path.name + ".tmp")
        temporary.write_text(f"{offset}\n", encoding="ascii")
        os.replace(temporary, self.offset_path)
        self.offset = offset

    # --- ingesting -----------------------------------------------------------------------

    def ingest_available(self) -> int:
        """Ingest every complete line after the offset; the number of new rows.

        Never raises for a store failure (counted, retried at the next call).
        """
        inserted = 0
        with self._ingest_lock:
            while True:
                progress = self._ingest_chunk()
                if progress is None:
                    break
                inserted += progress
            self._maybe_rotate()
        return inserted

    def _ingest_chunk(self) -> int | None:
        """One chunk: the rows inserted, or None when there is nothing (more) to do."""
        try:
            with open(self.path, "rb") as journal:
                size = os.fstat(journal.fileno()).st_size
                if self.offset > size:
                    logger.info("call record journal %s was truncated: from 0", self.path)
                    self._write_offset(0)
                if self.offset == size:
                    return None
                journal.seek(self.offset)
                chunk = journal.read(_CHUNK_BYTES)
        except FileNotFoundError:
            return None
        except OSError as error:
            self.counters["read_failures"] += 1
            logger.error("call record journal %s unreadable: %s", self.path, error)
            return None
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) < _CHUNK_BYTES:
                return None  # rule: a torn last line waits for its newline
            self.counters["malformed"] += 1  # rule: a line longer than a chunk is no record
            self._write_offset(self.offset + len(chunk))
            return 0
        records: dict[str, TollFreeCallRecord] = {}
        for line in chunk[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                call_record = decode_record(line)
            except (ValueError, UnicodeDecodeError) as error:
                self.counters["malformed"] += 1
                logger.warning(
                    "call record journal %s: malformed line skipped: %s", self.path, error
                )
                continue
            records.setdefault(call_record.call_id, call_record)
        try:
            inserted = self._insert(list(records.values()))
        except SQLAlchemyError as error:
            self.counters["store_failures"] += 1
            logger.error("call records not stored (retried): %s", error)
            return None
        self.counters["ingested"] += inserted
        self.counters["duplicates"] += len(records) - inserted
        self._write_offset(self.offset + end + 1)
        return inserted

    def _insert(self, records: Sequence[TollFreeCallRecord]) -> int:
        if not records:
            return 0
        dialect = self._engine.dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        values = [
            {
                "call_id": call_record.call_id,
                "tollfree_number": call_record.tollfree_number,
                "tenant_name": call_record.tenant_name,
                "caller": call_record.caller,
                "destination": call_record.destination,
                "category": call_record.category.value,
                "final_status": call_record.final_status,
                "arrival_time": call_record.arrival_time,
                "answer_time": call_record.answer_time,
                "end_time": call_record.end_time,
            }
            for call_record in records
        ]
        statement = (
            insert(TollFreeCallRecordRow)
            .on_conflict_do_nothing(index_elements=["call_id"])
            .returning(TollFreeCallRecordRow.call_id)
        )
        with self._engine.begin() as connection:
            return len(connection.execute(statement, values).all())

    def _maybe_rotate(self) -> None:
        if self._sink is None:
            return
        try:
            if os.stat(self.path).st_size <= self._rotate_bytes:
                return
            if self._sink.truncate_if_consumed(self.offset, lambda: self._write_offset(0)):
                self.counters["rotations"] += 1
        except OSError as error:
            self.counters["rotation_failures"] += 1
            logger.error("call record journal %s not rotated: %s", self.path, error)

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; its first ingest replays what an earlier run left."""
        self._thread = threading.Thread(target=self._run, name="call-record-ingester", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.ingest_available()
            except Exception as error:  # rule: the thread never dies; next poll retries
                self.counters["errors"] += 1
                logger.exception("call record ingester: %s", error)
            if self._stopping.wait(self._poll_seconds):
                return

    def stop(self) -> None:
        """Stop the thread (bounded wait), then ingest what is left (module rules)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_SECONDS)
        self.ingest_available()
