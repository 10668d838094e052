"""Write rows as a Parquet lake laid out exactly like the Flink sinks (see pipelines/lake/layout.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake.layout import EVENTS, PARTITION_COLUMNS, LakeTable

# Matches the sink's committed-file glob `part-*`; Flink's own names carry no extension either.
FIXTURE_FILE_NAME = "part-fixture-0"


def parse_utc(value: str | dt.datetime) -> dt.datetime:
    """RFC 3339 string (or datetime) -> naive UTC datetime, as the lake stores it."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def write_table(lake_dir: str | Path, table: LakeTable, rows: list[dict], time_column: str) -> list[Path]:
    """Write rows into dt=YYYY-MM-DD/hr=HH folders chosen by `time_column`; returns the files written.

    Missing columns become nulls; an unknown column is an error (a typo would silently test nothing).
    """
    schema = table.arrow_schema()
    unknown = {key for row in rows for key in row} - set(schema.names) - set(PARTITION_COLUMNS)
    if unknown:
        raise ValueError(f"columns not in lake table {table.name}: {sorted(unknown)}")
    timestamp_columns = {field.name for field in schema if pa.types.is_timestamp(field.type)}
    partitions: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        typed = {
            name: parse_utc(row[name])
            if name in timestamp_columns and row.get(name) is not None
            else row.get(name)
            for name in schema.names
        }
        moment = typed[time_column]
        partitions[(moment.strftime("%Y-%m-%d"), moment.strftime("%H"))].append(typed)
    written = []
    for (day, hour), partition_rows in sorted(partitions.items()):
        folder = table.path(lake_dir) / f"dt={day}" / f"hr={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FIXTURE_FILE_NAME
        pq.write_table(pa.Table.from_pylist(partition_rows, schema=schema), path)
        written.append(path)
    return written


def write_events(lake_dir: str | Path, events: list[dict]) -> list[Path]:
    """Write access events (contract form: RFC 3339 event_time) as the lake's events table.

    Fields outside the contract go to `extras` as one JSON object, as the job's parser keeps them.
    """
    columns = set(EVENTS.arrow_schema().names)
    rows = []
    for event in events:
        extras = {key: value for key, value in event.items() if key not in columns}
        row = {key: value for key, value in event.items() if key in columns}
        rows.append({**row, "extras": json.dumps(extras, separators=(",", ":"))} if extras else row)
    return write_table(lake_dir, EVENTS, rows, time_column="event_time")


def read_jsonl(path: str | Path) -> list[dict]:
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
