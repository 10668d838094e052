"""The DuckDB batch lake builder (pipelines/lake/batch_lake.py): the job's lake, built without a JVM.

The fast tier checks the layout, the contract check and the errors; the integration test replays one
corpus through the real Flink job and through build_lake and finds every table equal, row for row.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from groundtruth import expected_aggregates, lake_aggregates, lake_event_ids, normalise

from pipelines.commands.cli import main as usagewatch
from pipelines.lake import layout as lake
from pipelines.lake.analyst import lake_relation, open_lake
from pipelines.lake.batch_lake import BatchLakeError, build_lake, leading_event_time
from pipelines.stream.flink_job import run_job
from pipelines.traffic.generator import GeneratorConfig, generate_records

START = datetime(2026, 11, 4, 9, 40, tzinfo=UTC)
# 40 minutes across an hour boundary: two hourly partitions per table. Disorder (5 s) stays within the
# job's 10 s watermark bound, so the job finds nothing late either.
CORPUS = GeneratorConfig(
    seed=17, accounts=120, start=START, duration=timedelta(minutes=40), max_disorder_s=5, malformed=8
)


def corpus_lines() -> tuple[list[str], list[dict], int]:
    """(lines, valid events, malformed count) of the seeded corpus, with the generator's broken records."""
    records = list(generate_records(CORPUS))
    lines = [record.value.decode() for record in records]
    valid = [json.loads(record.value) for record in records if not record.malformed]
    return lines, valid, sum(record.malformed for record in records)


def edge_lines(template: dict) -> tuple[list[str], list[dict]]:
    """Records the contract accepts in unusual spellings, and ones it rejects for subtle reasons.

    They are variants of `template`, the corpus's last event, so that after it they are not late.

    Returns (lines, the valid events among them as the lake must store them).
    """

    def event(suffix: str, **changes) -> dict:
        return {**template, "event_id": f"edge-{suffix}", **changes}

    twelve = event("integral-float")
    extras = event("extras", gateway={"region": "eu-west", "hops": [1, 2]}, trace="abc")
    # the field profile's kind of extra: scalars, which DuckDB writes back itself
    scalar_extras = event("scalar-extras", geo_accuracy_km=25, region="eu-west", flag=True, note=None)
    no_tags = {key: value for key, value in event("no-tags").items() if key != "request_tags"}
    ipv6 = event("ipv6", source_ip="2001:db8::1")
    unicode = event("unicode", user_agent="agent/1.0 (café; 東京)")
    crlf = event("crlf")
    tokens = twelve["input_tokens"]
    lines = [
        json.dumps(twelve).replace(f'"input_tokens": {tokens},', f'"input_tokens": {tokens}.0,'),
        json.dumps(extras),
        json.dumps(scalar_extras, separators=(",", ":")),
        json.dumps(no_tags),
        json.dumps(ipv6),
        json.dumps(unicode, ensure_ascii=False),
        json.dumps(crlf) + "\r",  # a Windows line end: the reader drops the \r
        # rejected:
        "",  # an empty line is an empty record
        json.dumps(event("dup")).replace("{", '{"account_id": "other", ', 1),  # duplicate key
        json.dumps(event("nan")).replace('"latitude": ', '"latitude": NaN, "x": ', 1),
        json.dumps(event("trailing-comma"))[:-1] + ",}",
        json.dumps(event("bad-ipv6", source_ip="2001:db8:::1")),
        json.dumps(event("fraction", input_tokens=1.5)),
        json.dumps(event("tag-null", request_tags=["a", None])),
        # past the contract's bounds (issue 11): a long id, a token count that would overflow a sum
        json.dumps(event("long-account", account_id="a" * 129)),
        json.dumps(event("overflow", input_tokens=2**63 - 1)),
        json.dumps(event("many-tags", request_tags=["t"] * 33)),
    ]
    return lines, [twelve, extras, scalar_extras, {**no_tags, "request_tags": []}, ipv6, unicode, crlf]


def table_rows(lake_dir: Path, table: lake.LakeTable, ignore: tuple[str, ...] = ()) -> Counter:
    """Every row of a lake table (partition columns included) as a multiset of tuples."""
    con = duckdb.connect()
    try:
        result = con.execute(f"select * from {lake_relation(table, lake_dir)}")
        names = [column[0] for column in result.description]
        keep = [index for index, name in enumerate(names) if name not in ignore]
        return Counter(
            tuple(tuple(row[i]) if isinstance(row[i], list) else row[i] for i in keep)
            for row in result.fetchall()
        )
    finally:
        con.close()


# --- fast tier -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, object, list[dict], int, list[dict]]:
    lines, valid, malformed = corpus_lines()
    extra_lines, extra_valid = edge_lines(valid[-1])
    source = tmp_path_factory.mktemp("batch") / "events.jsonl"
    source.write_text("\n".join(lines + extra_lines) + "\n", encoding="utf-8")
    lake_dir = source.parent / "lake"
    report = build_lake(source, lake_dir)
    rejected = len(extra_lines) - len(extra_valid)
    return source, lake_dir, report, valid + extra_valid, malformed + rejected, extra_valid


def test_every_table_is_partitioned_committed_and_typed_like_the_job(built):
    _, lake_dir, report, valid, _, _ = built
    hours = {f"dt=2026-11-04/hr={hour}" for hour in ("09", "10")}
    for table in (lake.EVENTS, *lake.TABLES[1:5]):
        partitions = {f"{p.parent.name}/{p.name}" for p in table.path(lake_dir).glob("dt=*/hr=*")}
        assert partitions == hours, table.name
        for partition in table.path(lake_dir).glob("dt=*/hr=*"):
            assert (partition / lake.SUCCESS_FILE).is_file()
            files = list(partition.glob(lake.COMMITTED_FILE_GLOB))
            assert files, partition
            for part_file in files:
                assert pq.read_schema(part_file).remove_metadata().equals(table.arrow_schema()), part_file
    assert lake.LATE_EVENTS.path(lake_dir).is_dir()
    assert not list(lake.LATE_EVENTS.path(lake_dir).rglob(lake.COMMITTED_FILE_GLOB))
    assert not [path for path in lake_dir.iterdir() if path.name.startswith(".")]  # staging removed
    assert report.events == len(valid) and report.records == report.events + report.dead_letters
    assert report.partitions == 2 * 5 + 1  # five tables over two hours, dead letters in the build's hour


def test_archive_and_aggregates_equal_ground_truth(built):
    _, lake_dir, _, valid, _, extra_valid = built
    assert Counter(lake_event_ids(lake_dir)) == Counter(event["event_id"] for event in valid)
    assert normalise(lake_aggregates(lake_dir)) == normalise(expected_aggregates(valid))
    con = open_lake(lake_dir)
    try:
        stored = {
            row[0]: row[1:]
            for row in con.execute(
                "select event_id, input_tokens, request_tags, extras, user_agent, source_ip,"
                " kafka_partition, kafka_offset from events where event_id like 'edge-%'"
            ).fetchall()
        }
    finally:
        con.close()
    for event in extra_valid:
        tokens, tags, extras, agent, ip, partition, offset = stored[event["event_id"]]
        assert (tokens, tags, agent, ip) == (
            event["input_tokens"],
            event["request_tags"],
            event["user_agent"],
            event["source_ip"],
        )
        assert (partition, offset) == (None, None)  # a file has no Kafka coordinates
    assert json.loads(stored["edge-extras"][2]) == {
        "gateway": {"region": "eu-west", "hops": [1, 2]},
        "trace": "abc",
    }
    assert (
        stored["edge-scalar-extras"][2] == '{"geo_accuracy_km":25,"region":"eu-west","flag":true,"note":null}'
    )
    assert stored["edge-no-tags"][2] is None


def test_broken_records_become_dead_letters_with_the_contract_reason(built):
    source, lake_dir, report, _, rejected, _ = built
    valid_ids = set(lake_event_ids(lake_dir))
    expected_raw = []
    for line in source.read_text(encoding="utf-8").split("\n")[:-1]:
        line = line.removesuffix("\r")
        try:
            event_id = json.loads(line).get("event_id")
        except ValueError:
            event_id = None
        if event_id not in valid_ids:
            expected_raw.append(line)
    con = open_lake(lake_dir)
    try:
        letters = con.execute("select reason, raw, event_time, failed_at from dead_letters").fetchall()
    finally:
        con.close()
    assert report.dead_letters == rejected == len(letters)
    assert sorted(raw for _, raw, _, _ in letters) == sorted(expected_raw)
    reasons = {raw: reason for reason, raw, _, _ in letters}
    assert all(reasons.values())
    assert reasons[""].startswith("invalid JSON")
    assert "duplicate field 'account_id'" in next(r for raw, r in reasons.items() if "edge-dup" in raw)
    assert "NaN is not a JSON number" in next(r for raw, r in reasons.items() if "NaN" in raw)
    assert "input_tokens" in next(r for raw, r in reasons.items() if "edge-fraction" in raw)
    assert "source_ip" in next(r for raw, r in reasons.items() if "edge-bad-ipv6" in raw)
    for _, raw, event_time, failed_at in letters:
        assert event_time == leading_event_time(raw)
        assert failed_at is not None


def test_leading_event_time_reads_up_to_the_field_like_the_job():
    truncated = '{"event_id":"x","event_time":"2026-11-04T09:40:01.250Z","account_id":"a'
    assert leading_event_time(truncated) == datetime(2026, 11, 4, 9, 40, 1, 250000)
    assert leading_event_time('{"event_id":"x", "event_time": 5}') is None
    assert leading_event_time('{"event_id": , "event_time":"2026-11-04T09:40:01.250Z"}') is None
    assert leading_event_time('{"event_time":"2026-02-30T09:40:01.250Z"}') is None
    assert leading_event_time("[1]") is None


def test_missing_or_unreadable_input_is_a_clear_error(tmp_path):
    with pytest.raises(BatchLakeError, match="input file not found: .*nope.jsonl"):
        build_lake(tmp_path / "nope.jsonl", tmp_path / "lake")
    with pytest.raises(BatchLakeError, match="input is not a file"):
        build_lake(tmp_path, tmp_path / "lake")
    blocked = tmp_path / "blocked.jsonl"
    blocked.write_text("{}\n")
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(BatchLakeError, match="cannot write the lake"):
        build_lake(blocked, tmp_path / "not-a-dir" / "lake")
    if os.geteuid() != 0:  # root reads anything
        blocked.chmod(0)
        with pytest.raises(BatchLakeError, match="cannot read input"):
            build_lake(blocked, tmp_path / "lake")
    assert not (tmp_path / "lake").exists()


def test_replay_engine_duckdb_builds_the_lake(tmp_path, capsys):
    lines, valid, _ = corpus_lines()
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")
    lake_dir = tmp_path / "lake"
    assert usagewatch(["replay", "--engine", "duckdb", "--input", str(source), "--lake", str(lake_dir)]) == 0
    assert f"{len(valid):,} events" in capsys.readouterr().out
    assert sorted(lake_event_ids(lake_dir)) == sorted(event["event_id"] for event in valid)
    assert usagewatch(["replay", "--engine", "duckdb", "--input", str(tmp_path / "x"), "--lake", "l"]) == 2
    assert "input file not found" in capsys.readouterr().err


# --- integration tier: the real job, the same input -------------------------------------------------------

# Columns whose values depend on the engine, documented in pipelines/lake/batch_lake.py: a dead letter's
# reason is the contract check's wording, and it is stamped (and partitioned) when it failed.
ENGINE_SPECIFIC = {lake.DEAD_LETTERS.name: ("reason", "failed_at", "dt", "hr")}


@pytest.mark.integration
def test_batch_lake_equals_the_flink_jobs_lake_table_for_table(tmp_path):
    lines, valid, _ = corpus_lines()
    extra_lines, _ = edge_lines(valid[-1])
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines + extra_lines) + "\n", encoding="utf-8")

    job_lake, batch_lake = tmp_path / "job-lake", tmp_path / "batch-lake"
    assert run_job(["--source", "file", "--input", str(source), "--lake", str(job_lake)]) == 0
    report = build_lake(source, batch_lake)

    differences = {}
    for table in lake.TABLES:
        # the same Parquet types from both engines: INT64 millisecond timestamps, never legacy INT96
        for part_file in table.path(job_lake).glob(f"dt=*/hr=*/{lake.COMMITTED_FILE_GLOB}"):
            assert pq.read_schema(part_file).remove_metadata().equals(table.arrow_schema()), part_file
        ignore = ENGINE_SPECIFIC.get(table.name, ())
        job_rows, batch_rows = table_rows(job_lake, table, ignore), table_rows(batch_lake, table, ignore)
        if batch_rows != job_rows:
            differences[table.name] = {"job only": job_rows - batch_rows, "batch only": batch_rows - job_rows}
    assert not differences
    assert report.events == sum(table_rows(job_lake, lake.EVENTS).values()) > len(valid)
    assert report.dead_letters == sum(table_rows(job_lake, lake.DEAD_LETTERS).values()) > 10
    assert not table_rows(job_lake, lake.LATE_EVENTS)  # within the bound: the job found nothing late
