"""`usagewatch compact`: closed partitions end with one file, and every query answers exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lakefixture import write_events

from pipelines.commands import cli
from pipelines.detect.detections import run_detections
from pipelines.lake import compaction
from pipelines.lake.analyst import execute_read_only, open_lake
from pipelines.lake.layout import EVENTS, SUCCESS_FILE
from pipelines.traffic.generator import GeneratorConfig, generate_events

START = datetime(2026, 11, 27, 8, 45, tzinfo=UTC)  # spans hours 08 and 09
SMALL_FILES_PER_PARTITION = 12
OPEN_HOUR = "09"  # the last hour gets no _SUCCESS marker: Flink may still be writing to it

QUERIES = [
    "select * exclude (request_tags), list_sort(request_tags) as tags from events order by event_id",
    "select dt, hr, count(*), sum(input_tokens), count(distinct account_id) from events"
    " group by all order by all",
    "select country, count(*) from events group by all order by all",
]


def write_small_files(lake_dir: Path, events: list[dict], files: int) -> None:
    """The events as many small files per partition, named like Flink's committed parts."""
    for index in range(files):
        staging = lake_dir.parent / f"staging-{index}"
        for written in write_events(staging, events[index::files]):
            target = lake_dir / written.relative_to(staging).parent / f"part-small-{index}"
            target.parent.mkdir(parents=True, exist_ok=True)
            written.rename(target)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    config = GeneratorConfig(
        seed=5, accounts=60, hydra_accounts=20, start=START, duration=timedelta(minutes=30)
    )
    events = list(generate_events(config))
    lake_dir = tmp_path / "lake"
    write_small_files(lake_dir, events, SMALL_FILES_PER_PARTITION)
    for partition in EVENTS.path(lake_dir).glob("dt=*/hr=*"):
        if partition.name != f"hr={OPEN_HOUR}":
            (partition / SUCCESS_FILE).touch()
    return lake_dir


def answers(lake_dir: Path) -> list[list[tuple]]:
    con = open_lake(lake_dir)
    try:
        results = [execute_read_only(con, query)[1] for query in QUERIES]
        alerts = run_detections(con, now=START)
        results.append(sorted((alert["detection_id"], alert["entity_id"]) for alert in alerts))
        return results
    finally:
        con.close()


def committed_files(partition: Path) -> list[str]:
    return sorted(path.name for path in partition.glob("part-*"))


def run_compact(*argv: str) -> int:
    return cli.main(["compact", *argv])


def test_compaction_leaves_one_file_per_closed_partition_and_identical_answers(lake, capsys):
    before = answers(lake)
    assert sum(len(result) for result in before) > 6000  # the queries actually see the data
    partitions = sorted(EVENTS.path(lake).glob("dt=*/hr=*"))
    open_partition = next(p for p in partitions if p.name == f"hr={OPEN_HOUR}")
    open_files = committed_files(open_partition)

    assert run_compact("--lake", str(lake), "--table", "events") == 0

    assert answers(lake) == before
    for partition in partitions:
        if partition == open_partition:
            assert committed_files(partition) == open_files
        else:
            (only,) = committed_files(partition)
            assert only.startswith(compaction.COMPACTED_PREFIX) and only.endswith(".parquet")
        # nothing hidden left behind: no staged file, no work directory
        assert sorted(path.name for path in partition.iterdir() if path.name.startswith(".")) == []
    assert f"compacted {len(partitions) - 1} partition(s)" in capsys.readouterr().out


def test_a_reader_never_sees_old_and_new_files_together(lake, monkeypatch):
    con = open_lake(lake)
    rows_before = con.execute("select count(*) from events").fetchone()[0]
    con.close()
    seen: list[int] = []
    real_rename = Path.rename

    def rename_and_look(self: Path, target):
        result = real_rename(self, target)
        # What a reader globbing part-* counts right after this step.
        reader = open_lake(lake)
        seen.append(reader.execute("select count(*) from events").fetchone()[0])
        reader.close()
        return result

    monkeypatch.setattr(Path, "rename", rename_and_look)
    compaction.compact(lake, [EVENTS], min_files=2)

    assert seen and max(seen) <= rows_before  # never a duplicated row
    assert seen[-1] == rows_before


@pytest.mark.parametrize("crash_after_renames", [0, 1, SMALL_FILES_PER_PARTITION])
def test_a_crash_mid_compaction_is_repaired_by_the_next_run(lake, monkeypatch, crash_after_renames):
    before = answers(lake)
    real_rename = Path.rename
    renames = 0

    def crashing_rename(self: Path, target):
        nonlocal renames
        if renames == crash_after_renames:
            raise KeyboardInterrupt("simulated crash")
        renames += 1
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", crashing_rename)
    with pytest.raises(KeyboardInterrupt):
        compaction.compact(lake, [EVENTS], min_files=2)
    monkeypatch.setattr(Path, "rename", real_rename)

    compaction.compact(lake, [EVENTS], min_files=2)

    assert answers(lake) == before
    for partition in compaction.closed_partitions(EVENTS, lake):
        assert len(committed_files(partition)) == 1
        assert not any(path.name.startswith(".") for path in partition.iterdir())


def test_min_files_leaves_partitions_with_few_files_alone(lake):
    assert compaction.compact(lake, [EVENTS], min_files=SMALL_FILES_PER_PARTITION + 1) == []
    for partition in compaction.closed_partitions(EVENTS, lake):
        assert len(committed_files(partition)) == SMALL_FILES_PER_PARTITION


def test_compact_rejects_a_missing_lake(tmp_path, capsys):
    assert run_compact("--lake", str(tmp_path / "nope")) == 2
    assert "does not exist" in capsys.readouterr().err
