"""Floors of (a): the project's job cut down to its first stages, to measure what those stages alone cost.

`python bench/floor_job.py --floor KIND JOB-ARGS...` runs jobs/usage_aggregates.py's main with the same
source, functions, views and settings, but only one INSERT:
  archive  the `events` archive alone (Kafka -> parse -> Parquet), no windows, late events or dead letters
  parse    the same rows into Flink's blackhole connector: Kafka -> parse, no Parquet writer
  source   the raw records into the blackhole: Kafka fetch and the source's watermark, nothing parsed
If a floor of the shipped job's first stages is below a throughput target on the same cores, no change
to the later stages (windows, distinct counts, checkpoints of their state) can reach that target.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import usage_aggregates  # noqa: E402
from pipelines.lake import layout as lake  # noqa: E402
from pipelines.stream import flink_job  # noqa: E402

FLOORS = ("archive", "parse", "source")


def _blackhole_ddl(name: str, columns: tuple[tuple[str, str], ...]) -> str:
    column_list = ",\n  ".join(f"`{column}` {flink_type}" for column, flink_type in columns)
    return f"create temporary table {name} (\n  {column_list}\n) with ('connector' = 'blackhole')"


def floor_statements(floor: str, config: flink_job.JobConfig) -> tuple[list[str], list[str]]:
    ddl, inserts = flink_job.statements(config)
    archive_insert = next(insert for insert in inserts if insert.startswith("insert into lake_events\n"))
    if floor == "archive":
        return ddl, [archive_insert]
    if floor == "parse":
        sink = _blackhole_ddl("parse_floor", lake.EVENTS.columns)
        return [*ddl, sink], [archive_insert.replace("insert into lake_events", "insert into parse_floor", 1)]
    sink = _blackhole_ddl("source_floor", (("payload", "bytes"),))
    return [*ddl, sink], ["insert into source_floor select payload from access_events_source"]


def _pop_floor(argv: list[str]) -> str:
    index = argv.index("--floor")
    floor = argv[index + 1]
    if floor not in FLOORS:
        raise SystemExit(f"--floor must be one of {', '.join(FLOORS)}, not {floor!r}")
    del argv[index : index + 2]
    return floor


if __name__ == "__main__":
    chosen_floor = _pop_floor(sys.argv)
    usage_aggregates.statements = lambda config: floor_statements(chosen_floor, config)
    usage_aggregates.main()
