"""The DuckDB batch reference (variant `duckdb_batch`): the bench events as a JSONL file, built into the
lake by `usagewatch replay --engine duckdb` (pipelines/lake/batch_lake.py) — same parse, archive and four
one-minute aggregates as the job, in one DuckDB process, no Kafka, no checkpoints."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from bench.workload import Workload, base_file

ID_FIELD = '"event_id":"'
TIME_FIELD = '"event_time":"'


def _tiled(value: str, copy: int) -> str:
    """TopicLoader.java's tiling of one event: event_time + `copy` days, `copy` in the id's first 8 hex."""
    ident = value.index(ID_FIELD) + len(ID_FIELD)
    moment = value.index(TIME_FIELD) + len(TIME_FIELD)
    shifted = (dt.date.fromisoformat(value[moment : moment + 10]) + dt.timedelta(days=copy)).isoformat()
    return value[:ident] + f"{copy:08x}" + value[ident + 8 : moment] + shifted + value[moment + 10 :]


def events_file(workload: Workload, cache_dir: Path) -> Path:
    """The workload topic's records, in the loader's order, one per line (cached by seed and size)."""
    path = cache_dir / f"events-s{workload.seed}-a{workload.accounts}-n{workload.events}.jsonl"
    if path.exists():
        return path
    base = base_file(workload, cache_dir).read_text(encoding="utf-8").splitlines()
    values = [line.split("\t", 1)[1] for line in base]
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8", buffering=1 << 20) as handle:
        for index in range(workload.events):
            copy, position = divmod(index, len(values))
            handle.write(_tiled(values[position], copy) + "\n")
    partial.rename(path)
    return path


def command(workload: Workload, cache_dir: Path, lake_dir: Path) -> list[str]:
    events = events_file(workload, cache_dir)
    return [sys.executable, "-m", "pipelines.commands.cli", "replay", "--engine", "duckdb",
            "--input", str(events), "--lake", str(lake_dir)]  # fmt: skip
