"""Schema evolution: partitions written before and after a layout change read together through the views.

Old layout: latency_ms as 32-bit INT and no extras column (as an older job wrote it). New layout:
latency_ms widened to BIGINT and a column a newer job added (client_region). The views must read
both, fill what a file lacks with nulls, keep lake.py's types, and detections must still run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.detect.detections import run_detections
from pipelines.lake import compaction
from pipelines.lake.analyst import execute_read_only, open_lake
from pipelines.lake.layout import EVENTS, SUCCESS_FILE

BASE_COLUMNS = {
    "event_id": pa.string(),
    "event_time": pa.timestamp("ms"),
    "account_id": pa.string(),
    "api_key_id": pa.string(),
    "source_ip": pa.string(),
    "country": pa.string(),
    "model": pa.string(),
    "endpoint": pa.string(),
    "input_tokens": pa.int64(),
    "output_tokens": pa.int64(),
    "status_code": pa.int32(),
    "request_tags": pa.list_(pa.string()),
}
OLD_LAYOUT = {**BASE_COLUMNS, "latency_ms": pa.int32()}
NEW_LAYOUT = {**BASE_COLUMNS, "latency_ms": pa.int64(), "extras": pa.string(), "client_region": pa.string()}
BEYOND_INT32 = 2**31 + 7  # only representable after the widening


def event(event_id: str, moment: dt.datetime, latency_ms: int, **new_fields) -> dict:
    # The first event of each layout comes from a restricted country, so a detection has work in both.
    country = "IR" if event_id.endswith("-0") else "DE"
    return {
        "event_id": event_id, "event_time": moment, "account_id": f"acct-{event_id}", "api_key_id": "key",
        "source_ip": "192.0.2.10", "country": country, "model": "m", "endpoint": "/v1/messages",
        "input_tokens": 5, "output_tokens": 7, "status_code": 200, "request_tags": [],
        "latency_ms": latency_ms, **new_fields,
    }  # fmt: skip


def write_partition(lake_dir: Path, hour: int, layout: dict, rows: list[dict], name: str) -> Path:
    folder = EVENTS.path(lake_dir) / "dt=2026-11-27" / f"hr={hour:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(list(layout.items()))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / name)
    return folder


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    lake_dir = tmp_path / "lake"
    old = [event(f"old-{i}", dt.datetime(2026, 11, 27, 8, i), latency_ms=100 + i) for i in range(3)]
    new = [
        event(f"new-{i}", dt.datetime(2026, 11, 27, 9, i), latency_ms=BEYOND_INT32 + i,
              extras='{"client_region": "eu"}', client_region="eu")
        for i in range(3)
    ]  # fmt: skip
    write_partition(lake_dir, 8, OLD_LAYOUT, old, "part-old-0")
    write_partition(lake_dir, 9, NEW_LAYOUT, new, "part-new-0")
    return lake_dir


def test_old_and_new_partitions_read_together_through_the_views(lake):
    con = open_lake(lake)
    try:
        types = dict(execute_read_only(con, "select column_name, column_type from (describe events)")[1])
        columns, rows = execute_read_only(
            con, "select event_id, latency_ms, extras, client_region, hr from events order by event_id"
        )
    finally:
        con.close()
    # lake.py's types win: the widened column is BIGINT, and columns old files lack are still there.
    assert types["latency_ms"] == "BIGINT"
    assert types["extras"] == "VARCHAR" and types["client_region"] == "VARCHAR"
    assert rows == [
        *[(f"new-{i}", BEYOND_INT32 + i, '{"client_region": "eu"}', "eu", "09") for i in range(3)],
        *[(f"old-{i}", 100 + i, None, None, "08") for i in range(3)],
    ]


def test_detections_run_over_mixed_layouts(lake):
    con = open_lake(lake)
    try:
        alerts = run_detections(con, now=dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC))
    finally:
        con.close()
    flagged = {alert["entity_id"] for alert in alerts if alert["detection_id"] == "restricted_region_access"}
    assert flagged == {"acct-old-0", "acct-new-0"}


def test_a_partition_holding_both_layouts_compacts_to_the_union(lake):
    partition = write_partition(
        lake, 9, OLD_LAYOUT, [event("old-late", dt.datetime(2026, 11, 27, 9, 30), latency_ms=1)], "part-old-1"
    )
    (partition / SUCCESS_FILE).touch()
    con = open_lake(lake)
    before = execute_read_only(con, "select * from events order by event_id")[1]
    con.close()

    assert len(compaction.compact(lake, [EVENTS], min_files=2)) == 1

    con = open_lake(lake)
    after = execute_read_only(con, "select * from events order by event_id")[1]
    con.close()
    assert after == before
    (compacted,) = partition.glob("part-*")
    fields = pq.read_schema(compacted)
    assert fields.field("latency_ms").type == pa.int64()
    assert "client_region" in fields.names
