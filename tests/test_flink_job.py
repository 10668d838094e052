"""The aggregation job's configuration and SQL, checked without a JVM."""

from __future__ import annotations

import argparse
import re

import pytest

from pipelines.commands import job_args
from pipelines.commands import stream as stream_commands
from pipelines.commands.cli import main as usagewatch
from pipelines.commands.job_args import build_job_arg_parser, config_from_args
from pipelines.lake import layout as lake
from pipelines.stream import flink_job, overrides
from pipelines.stream.flink_job import (
    JobConfig,
    flink_configuration,
    lake_sink_ddl,
    source_ddl,
    statements,
)


def kafka_config(**overrides) -> JobConfig:
    return JobConfig(lake_dir="/tmp/lake", **overrides)


def file_config(**overrides) -> JobConfig:
    return JobConfig(lake_dir="/tmp/lake", source="file", input_path="/tmp/events.jsonl", **overrides)


@pytest.mark.parametrize("config", [kafka_config(), file_config()], ids=["kafka", "file"])
def test_every_record_is_parsed_exactly_once(config):
    ddl, inserts = statements(config)
    calls = sum(statement.count("parse_access_event(") for statement in ddl + inserts)
    assert calls == 1


@pytest.mark.parametrize("config", [kafka_config(), file_config()], ids=["kafka", "file"])
def test_every_output_reads_the_shared_parse_and_none_reads_the_source(config):
    _, inserts = statements(config)
    for insert in inserts:
        assert "access_events_source" not in insert
        assert re.search(r"\b(valid_events|parsed_events|on_time_events|late_arrivals)\b", insert)


def test_windows_read_on_time_events_and_late_ones_go_to_their_own_table():
    ddl, inserts = statements(kafka_config())
    views = " ".join(ddl)
    assert "on_time_events as select * from valid_events where not (" in views
    assert "late_arrivals as" in views and "current_watermark(event_ts)" in views
    windowed = [insert for insert in inserts if "tumble(" in insert]
    assert len(windowed) == 4 and all("tumble(table on_time_events" in insert for insert in windowed)
    assert any(insert.startswith("insert into lake_late_events") for insert in inserts)


def test_valid_and_invalid_records_are_complementary():
    ddl, inserts = statements(kafka_config())
    assert "from parsed_events where error is null" in " ".join(ddl)
    dead_letter = [insert for insert in inserts if "dead_letter" in insert]
    assert len(dead_letter) == 1 and dead_letter[0].endswith("from parsed_events where error is not null")


def test_kafka_dead_letters_go_to_a_transactional_topic_and_file_ones_to_the_lake():
    kafka_ddl, kafka_inserts = statements(kafka_config(dlq_topic="bad-events"))
    topic_ddl = next(statement for statement in kafka_ddl if "dead_letter_topic" in statement)
    assert "'topic' = 'bad-events'" in topic_ddl
    assert "'sink.delivery-guarantee' = 'exactly-once'" in topic_ddl
    assert not any("lake_dead_letters" in statement for statement in kafka_ddl + kafka_inserts)

    file_ddl, file_inserts = statements(file_config())
    assert any("create temporary table lake_dead_letters" in statement for statement in file_ddl)
    assert not any("dead_letter_topic" in statement for statement in file_ddl + file_inserts)


@pytest.mark.parametrize("table", lake.TABLES, ids=lambda table: table.name)
def test_sink_declares_every_lake_column_and_hive_partitions(table):
    ddl = lake_sink_ddl(table, "/tmp/lake")
    for name, flink_type in table.columns:
        assert f"`{name}` {flink_type}" in ddl
    assert "partitioned by (dt, hr)" in ddl
    assert f"'path' = '/tmp/lake/{table.name}'" in ddl
    assert "'format' = 'parquet'" in ddl
    # INT64 millisecond timestamps like the batch lake's, not Flink's default legacy INT96
    assert "'parquet.write.int64.timestamp' = 'true'" in ddl
    assert "'parquet.timestamp.time.unit' = 'millis'" in ddl


def test_every_sink_insert_lists_its_columns_in_lake_order():
    _, inserts = statements(file_config())
    events_insert = next(insert for insert in inserts if insert.startswith("insert into lake_events"))
    contract_columns = [name for name, _ in lake.EVENTS.columns if name not in lake.PARTITION_COLUMNS]
    assert ", ".join(contract_columns) in events_insert


def test_watermark_and_lateness_come_from_the_configuration():
    ddl = source_ddl(kafka_config(watermark_delay_s=42))
    assert ddl.index("watermark for event_ts as") < ddl.index(".000') - interval '42' second\n")
    assert "'scan.bounded.mode'" not in ddl
    assert "'scan.bounded.mode' = 'latest-offset'" in source_ddl(kafka_config(bounded=True))


def test_user_values_are_quoted_as_sql_literals():
    ddl = source_ddl(kafka_config(topic="it's"))
    assert "'topic' = 'it''s'" in ddl


def test_checkpoints_are_exactly_once_and_retained():
    settings = flink_configuration(kafka_config(checkpoint_interval_s=7, idle_timeout_s=3))
    assert settings["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert settings["execution.checkpointing.interval"] == "7 s"
    assert settings["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert settings["table.exec.source.idle-timeout"] == "3 s"
    assert settings["table.local-time-zone"] == "UTC"
    assert "pipeline.jars" not in settings


def test_a_bounded_run_never_declares_a_partition_idle():
    """A stalled partition of a backfill must hold the watermark back, not be passed (its events late)."""
    settings = flink_configuration(kafka_config(bounded=True, idle_timeout_s=3))
    assert settings["table.exec.source.idle-timeout"] == "0 s"


def test_pipeline_jars_are_file_uris():
    settings = flink_configuration(kafka_config(pipeline_jars=("/opt/a.jar", "/opt/b.jar")))
    assert settings["pipeline.jars"] == "file:///opt/a.jar;file:///opt/b.jar"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source": "s3"}, "source must be"),
        ({"source": "file"}, "needs input_path"),
        ({"checkpoint_interval_s": 0}, "checkpoint_interval_s"),
        ({"parallelism": 0}, "parallelism"),
        ({"watermark_delay_s": -1}, "watermark_delay_s"),
        ({"max_future_skew_s": -1}, "max_future_skew_s"),
        ({"max_event_age_s": 2**31}, "max_event_age_s"),
    ],
)
def test_bad_configuration_fails_fast(overrides, message):
    with pytest.raises(ValueError, match=message):
        JobConfig(lake_dir="/tmp/lake", **overrides)


def test_cluster_arguments_need_no_local_jars():
    args = build_job_arg_parser().parse_args(
        ["--lake", "/data/lake", "--bootstrap-servers", "kafka:9092", "--pipeline-jars", "none"]
    )
    config = config_from_args(args)
    assert config.pipeline_jars == ()
    assert config.bootstrap_servers == "kafka:9092"
    assert config.source == "kafka"


# Issue 11, finding 3: one record dated 9999 moved the watermark to 9999 and made every later event late.
@pytest.mark.parametrize(
    ("config", "arrival"),
    [
        (kafka_config(), "metadata from 'timestamp'"),
        (file_config(), "metadata from 'file.modification-time'"),
    ],
    ids=["kafka", "file"],
)
def test_only_records_the_job_accepts_move_the_watermark(config, arrival):
    ddl = source_ddl(config)
    assert f"arrival_time timestamp_ltz(3) {arrival} virtual" in ddl
    watermark = ddl[ddl.index("watermark for event_ts as") :]
    # Only a record the parser accepts within the bounds moves the watermark, never past its arrival.
    assert watermark.startswith(
        "watermark for event_ts as coalesce(watermark_time(payload, cast(arrival_time as timestamp(3)),"
        f" {config.max_future_skew_s}, {config.max_event_age_s}), timestamp '1970-01-01 00:00:00.000')"
    )


def test_event_time_bounds_come_from_the_configuration_and_apply_in_the_one_parse():
    ddl, _ = statements(kafka_config(max_future_skew_s=120, max_event_age_s=86_400))
    (parse,) = [statement for statement in ddl if "parse_access_event(" in statement]
    assert (
        "parse_access_event(payload, kafka_partition, kafka_offset,"
        " cast(arrival_time as timestamp(3)), 120, 86400)" in parse
    )
    defaults = JobConfig(lake_dir="/tmp/lake")
    assert 60 <= defaults.max_future_skew_s <= 900  # minutes, not hours: the watermark's own horizon


def test_event_time_bounds_reach_the_job_from_its_command_line():
    args = build_job_arg_parser().parse_args(
        ["--lake", "/data/lake", "--max-future-skew-s", "60", "--max-event-age-s", "3600"]
    )
    config = config_from_args(args)
    assert (config.max_future_skew_s, config.max_event_age_s) == (60, 3600)


def test_a_replay_passes_its_event_time_bounds_to_the_job(tmp_path, monkeypatch):
    source = tmp_path / "old.jsonl"
    source.write_text("{}\n")
    calls = []
    # the replay command calls the run_job its module imported (whichever test imported it first)
    monkeypatch.setattr(stream_commands, "run_job", lambda job_args: calls.append(job_args) or 0)
    assert (
        usagewatch(["replay", "--input", str(source), "--lake", str(tmp_path), "--max-event-age-s", "99"])
        == 0
    )
    (job_args,) = calls
    config = config_from_args(build_job_arg_parser().parse_args(job_args))
    assert (config.max_event_age_s, config.max_future_skew_s) == (
        99,
        JobConfig(lake_dir="").max_future_skew_s,
    )


def test_tuning_settings_and_table_options_from_the_command_line_override_the_jobs_own():
    args = build_job_arg_parser().parse_args(
        [
            "--lake", "/data/lake",
            "--set", "pipeline.object-reuse=false",
            "--set", "execution.checkpointing.timeout=5 min",
            "--source-option", "properties.fetch.min.bytes=1048576",
            "--lake-option", "parquet.compression=ZSTD",
            "--pipeline-jars", "none",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    settings = flink_configuration(config)
    assert settings["pipeline.object-reuse"] == "false"
    assert settings["execution.checkpointing.timeout"] == "5 min"
    assert settings["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    ddl, _ = statements(config)
    assert "'properties.fetch.min.bytes' = '1048576'" in source_ddl(config)
    sinks = [statement for statement in ddl if statement.startswith("create temporary table lake_")]
    assert sinks and all("'parquet.compression' = 'ZSTD'" in sink for sink in sinks)
    assert not any("'SNAPPY'" in sink for sink in sinks)


def test_job_start_passes_tuning_settings_on_to_the_job_script():
    parser = argparse.ArgumentParser()
    job_args.add_stream_options(parser)
    args = parser.parse_args(["--lake", "lake", "--set", "a.b=1", "--set", "c=x=y", "--lake-option", "k=v"])
    argv = job_args.job_argv(args)
    assert argv == ["--lake", "lake", "--set", "a.b=1", "--set", "c=x=y", "--lake-option", "k=v"]


PROTECTED = [
    (kind, flag, key)
    for kind, flag in overrides.OVERRIDE_FLAGS.items()
    for key in overrides.PROTECTED_OPTIONS[kind]
]


@pytest.mark.parametrize(
    ("kind", "flag", "key"), PROTECTED, ids=[f"{flag}-{key}" for _, flag, key in PROTECTED]
)
def test_an_override_of_what_the_guarantees_rest_on_is_refused_before_anything_starts(
    kind, flag, key, capsys
):
    # e.g. AT_LEAST_ONCE checkpoints, mini-batch (measured: every event counted twice), a lake table
    # path outside --lake, a fresh group starting at the latest offset (the backlog silently skipped)
    setting = f"{key}=x"
    with pytest.raises(SystemExit) as exit_info:
        build_job_arg_parser().parse_args(["--lake", "l", flag, setting])
    assert exit_info.value.code == 2
    assert f"{flag} {setting} is refused:" in capsys.readouterr().err
    # the same through `usagewatch job start` / `cluster submit`, which share the stream options
    parser = argparse.ArgumentParser()
    job_args.add_stream_options(parser, lake_from_config=True)
    with pytest.raises(SystemExit):
        parser.parse_args([flag, setting])
    # and for a JobConfig built in code
    with pytest.raises(ValueError, match="is refused"):
        JobConfig(lake_dir="/tmp/lake", **{kind: ((key, "x"),)})


@pytest.mark.parametrize("bad", ["novalue", "=1", ""])
def test_a_setting_without_key_and_value_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        build_job_arg_parser().parse_args(["--lake", "l", "--set", bad])
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_a_local_runs_jvm_is_sized_unless_the_operator_sized_it():
    environ: dict[str, str] = {}
    flink_job.size_minicluster_jvm(environ)
    assert environ["JVM_ARGS"] == flink_job.MINICLUSTER_JVM_ARGS
    assert "-Xmx" in flink_job.MINICLUSTER_JVM_ARGS
    operators = {"JVM_ARGS": "-Xmx6g"}
    flink_job.size_minicluster_jvm(operators)
    assert operators == {"JVM_ARGS": "-Xmx6g"}
