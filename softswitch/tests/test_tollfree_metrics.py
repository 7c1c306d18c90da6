"""`softswitch_tollfree_calls_total{tollfree_number,category}`: the counting sink counts
every record the switch produced, forwards it to the journal, and the collector exposes
the same numbers the records in the store give."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from sqlalchemy import func, select

from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
from cloudpbx.db import create_engine_for, upgrade
from cloudpbx.models import TollFreeCallRecordRow
from cloudpbx.recordjournal import JournalIngester, JournalSink
from softswitch.metrics import SwitchCollector, switch_registry, tollfree_call_collector
from softswitch.tollfree_metrics import CountingSink


def _record(index: int, category: TollFreeCategory, number: str) -> TollFreeCallRecord:
    return TollFreeCallRecord(
        call_id=f"call-{index}",
        tollfree_number=number,
        tenant_name="demo",
        caller="0312345678",
        destination=None,
        category=category,
        final_status=200,
        arrival_time=1.8e9 + index,
        answer_time=None,
        end_time=1.8e9 + index + 1,
    )


class _FailingSink:
    def record(self, call_record: TollFreeCallRecord) -> None:
        raise RuntimeError("broken")


def test_the_counters_equal_the_stored_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    upgrade(url)
    engine = create_engine_for(url)
    journal = JournalSink(tmp_path / "records.jsonl")
    sink = CountingSink(journal)
    collector = SwitchCollector([], collectors=[tollfree_call_collector(sink.calls)])
    categories = [TollFreeCategory.CONNECTED] * 3 + [TollFreeCategory.BUSY]
    for index, category in enumerate(categories):
        sink.record(_record(index, category, "0120000111"))
    sink.record(_record(10, TollFreeCategory.OTHER, "0120000222"))
    JournalIngester(journal.path, engine).ingest_available()
    text = generate_latest(switch_registry(collector)).decode()
    row = TollFreeCallRecordRow
    with engine.connect() as connection:
        result = connection.execute(
            select(row.tollfree_number, row.category, func.count()).group_by(
                row.tollfree_number, row.category
            )
        )
        stored = {f"{number}/{category.value}": count for number, category, count in result}
    assert stored == {"0120000111/connected": 3, "0120000111/busy": 1, "0120000222/other": 1}
    for key, count in stored.items():
        number_text, category_text = key.split("/")
        sample = (
            f'softswitch_tollfree_calls_total{{category="{category_text}",'
            f'tollfree_number="{number_text}"}} {count:.1f}'
        )
        assert sample in text
    # Every category of a number is exposed from its first record on.
    assert (
        'softswitch_tollfree_calls_total{category="abandoned",tollfree_number="0120000111"} 0.0'
        in text
    )
    journal.close()
    engine.dispose()


def test_a_failing_inner_sink_is_counted_not_raised() -> None:
    sink = CountingSink(_FailingSink())
    sink.record(_record(1, TollFreeCategory.CONNECTED, "0120000111"))
    assert sink.calls[("0120000111", "connected")] == 1
    assert sink.counters["forward_failures"] == 1
