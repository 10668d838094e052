"""The aggregation job: raw access events -> parsed once in the JVM -> Parquet lake + dead letters.

This module only builds configuration and SQL text, so it is unit tested without a JVM;
``jobs/usage_aggregates.py`` hands the statements to PyFlink. The same statements run on the embedded
MiniCluster (``usagewatch job start`` / ``usagewatch replay``) and, unchanged, via ``flink run -py`` on a
cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.infra import paths, processes
from pipelines.infra.kafka_broker import DLQ_TOPIC, EVENTS_TOPIC
from pipelines.lake import layout as lake
from pipelines.stream.overrides import PROTECTED_OPTIONS, refuse_protected_option

JOB_SCRIPT = paths.REPO_ROOT / "jobs" / "usage_aggregates.py"
JOB_RUN_DIR = paths.RUN_DIR / "job"
JOB_LOG = JOB_RUN_DIR / "job.log"
JOB_LOG4J_PROPERTIES = Path(__file__).resolve().parent / "log4j-job.properties"

MAX_SQL_INT = 2**31 - 1

# Lake tables fed by a one-minute tumbling window, keyed as named.
WINDOWED_TABLES = (lake.ACCOUNT_MINUTE, lake.COUNTRY_MINUTE, lake.IP_MINUTE, lake.ASN_MINUTE)


@dataclass(frozen=True)
class JobConfig:
    lake_dir: str
    source: str = "kafka"  # "kafka" (streaming) or "file" (bounded replay of a JSONL file)
    input_path: str | None = None
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = EVENTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    group_id: str = "usagewatch-aggregates"
    # Stop at the offsets that are latest when the job starts (backfills and tests); else run forever.
    bounded: bool = False
    checkpoint_dir: str | None = None
    checkpoint_interval_s: int = 10
    watermark_delay_s: int = 10
    # Event-time bounds against each record's arrival (see source_ddl); a record outside them is a dead
    # letter. Five minutes covers edge clocks running ahead; two years of age lets backfills through
    # and stops the year-0001 and epoch-zero times of broken producers.
    max_future_skew_s: int = 300
    max_event_age_s: int = 2 * 365 * 86_400
    idle_timeout_s: int = 30
    parallelism: int = 1
    # Local runs put the fetched connector jars on pipeline.jars; a cluster has them in flink/lib.
    pipeline_jars: tuple[str, ...] = ()
    # A retained checkpoint or savepoint to restore state and Kafka offsets from.
    resume_from: str | None = None
    # Applied last, over the job's own (tuning and the benchmark's what-ifs): Flink settings
    # (`--set KEY=VALUE`), options of the Kafka source table (`--source-option`) and of every lake
    # sink table (`--lake-option`, e.g. parquet.* writer settings).
    extra_settings: tuple[tuple[str, str], ...] = ()
    source_options: tuple[tuple[str, str], ...] = ()
    lake_options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for kind in PROTECTED_OPTIONS:
            for key, value in getattr(self, kind):
                refuse_protected_option(kind, key, value)
        if self.source not in ("kafka", "file"):
            raise ValueError(f"source must be 'kafka' or 'file', not {self.source!r}")
        if self.source == "file" and not self.input_path:
            raise ValueError("a file source needs input_path")
        for name in ("checkpoint_interval_s", "parallelism"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("watermark_delay_s", "idle_timeout_s", "max_future_skew_s", "max_event_age_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_future_skew_s", "max_event_age_s"):
            if getattr(self, name) > MAX_SQL_INT:
                raise ValueError(f"{name} must be <= {MAX_SQL_INT} (a SQL INT)")


# Settings that make a checkpoint or savepoint portable: restorable on the MiniCluster or a session
# cluster, at another parallelism. The job sets them itself; `usagewatch cluster` puts them in the
# cluster's config.yaml as well.
PORTABLE_SETTINGS = {
    # Kept after cancel/kill so a restarted job can resume from the last one.
    "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    # Operator ids from the SQL plan, not from the chained graph: chaining differs between
    # parallelism 1 and 2, and so would hash-derived ids, which makes a savepoint unusable at another
    # parallelism.
    "table.exec.uid.generation": "ALWAYS",
    # The same for state: at parallelism 1 a lake writer (max parallelism 128) would chain with its
    # partition committer (always 1), and the savepoint would then not map onto the unchained pair.
    "pipeline.operator-chaining.chain-operators-with-different-max-parallelism": "false",
    # A failed job restarts from its last checkpoint by itself, backing off while a dependency is down.
    "restart-strategy.type": "exponential-delay",
    "restart-strategy.exponential-delay.initial-backoff": "1s",
    "restart-strategy.exponential-delay.max-backoff": "10s",
}


# The local MiniCluster runs inside PyFlink's gateway JVM, which reads JVM_ARGS when it starts. Unsized,
# that JVM may take a quarter of the machine's memory as heap and grows into it (6.3 GiB RSS at 1M events,
# 6.7 GiB at 5M in the benchmark on a 24 GiB machine). The job's state is a few minutes of windows and
# the Parquet writers buffer at most one checkpoint's rows: 2 GiB of heap is ample (benchmark what-if
# flink_unsized_heap is the JVM without it), and the parallel collector trades pauses the
# job does not notice for less GC work on two cores.
MINICLUSTER_JVM_ARGS = "-Xmx2g -XX:+UseParallelGC"


def size_minicluster_jvm(environ: MutableMapping[str, str]) -> None:
    """Give a local run's gateway JVM MINICLUSTER_JVM_ARGS unless the operator set JVM_ARGS."""
    environ.setdefault("JVM_ARGS", MINICLUSTER_JVM_ARGS)


def default_checkpoint_dir(lake_dir: str | Path) -> str:
    return (Path(lake_dir).resolve().parent / "checkpoints").as_uri()


def latest_checkpoint(checkpoint_dir: str) -> str | None:
    """The newest complete checkpoint (one with _metadata) under a local checkpoint directory, any job."""
    root = Path(checkpoint_dir.removeprefix("file://"))
    complete = [metadata.parent for metadata in root.glob("*/chk-*/_metadata")]
    if not complete:
        return None
    return max(complete, key=lambda chk: chk.stat().st_mtime).as_uri()


def flink_configuration(config: JobConfig) -> dict[str, str]:
    """Flink settings for the job; exactly-once checkpoints are what make the lake commit exactly once."""
    checkpoint_dir = config.checkpoint_dir or default_checkpoint_dir(config.lake_dir)
    settings = {
        "pipeline.name": "usagewatch-aggregates",
        "parallelism.default": str(config.parallelism),
        "execution.checkpointing.interval": f"{config.checkpoint_interval_s} s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoint_dir,
        # Event times are UTC wall-clock TIMESTAMP(3); the session zone only affects failed_at stamps.
        "table.local-time-zone": "UTC",
        # A Kafka partition with no traffic must not hold back every window. A bounded run (a backfill)
        # has no such partition: an empty one finishes at once and stops holding the watermark, and a
        # partition whose fetches stall on a loaded machine must not be passed by it: its events would
        # turn late, and how many would depend on the machine's load, not on the data.
        "table.exec.source.idle-timeout": "0 s" if config.bounded else f"{config.idle_timeout_s} s",
        # The source chain fans each parsed row out to seven branches; without reuse Flink deep-copies it
        # for each (RowDataSerializer.copy: a fifth of the source thread's CPU). The SQL runtime and our
        # UDFs never keep a row they were handed. Measured: source thread 48.6 -> 37.2 CPU-s, JVM 148 ->
        # 134 CPU-s at 1M events (bench what-if flink_no_object_reuse is the job without it).
        "pipeline.object-reuse": "true",
        **PORTABLE_SETTINGS,
    }
    if config.resume_from:
        settings["execution.state-recovery.path"] = config.resume_from
    if config.pipeline_jars:
        settings["pipeline.jars"] = ";".join(Path(jar).resolve().as_uri() for jar in config.pipeline_jars)
    settings.update(config.extra_settings)
    return settings


def _quote(value: str) -> str:
    """A SQL string literal (Flink SQL doubles single quotes)."""
    return "'" + value.replace("'", "''") + "'"


def _with_clause(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(key)} = {_quote(value)}" for key, value in options.items())


def source_ddl(config: JobConfig) -> str:
    # arrival_time is when the record reached us, the reference of the event-time bounds and the ceiling
    # of the watermark. For Kafka it is the record timestamp, which the brokers stamp on append
    # (log.message.timestamp.type=LogAppendTime, kafka_broker.py): a producer cannot forge it, and it is
    # stored with the record, so a replay of the topic gives every record the same verdict again, which
    # processing time would not. For a replayed file it is the file's modification time.
    if config.source == "kafka":
        metadata = (
            "  kafka_partition int metadata from 'partition' virtual,\n"
            "  kafka_offset bigint metadata from 'offset' virtual,\n"
            "  arrival_time timestamp_ltz(3) metadata from 'timestamp' virtual,\n"
        )
        options = {
            "connector": "kafka",
            "topic": config.topic,
            "properties.bootstrap.servers": config.bootstrap_servers,
            "properties.group.id": config.group_id,
            # Offsets come from the checkpoint on restore; a brand-new group starts at the beginning.
            "scan.startup.mode": "group-offsets",
            "properties.auto.offset.reset": "earliest",
            "properties.isolation.level": "read_committed",
            "format": "raw",
        }
        if config.bounded:
            options["scan.bounded.mode"] = "latest-offset"
    else:
        # A replayed file has no Kafka coordinates; the columns stay so both sources look alike.
        metadata = (
            "  kafka_partition as cast(null as int),\n  kafka_offset as cast(null as bigint),\n"
            "  arrival_time timestamp_ltz(3) metadata from 'file.modification-time' virtual,\n"
        )
        options = {"connector": "filesystem", "path": config.input_path, "format": "raw"}
    options.update(config.source_options)
    return (
        "create temporary table access_events_source (\n"
        # Bytes, not string: the parser decodes them itself and dead-letters what is not UTF-8, where a
        # string column would have replaced each bad byte with U+FFFD and archived the altered record.
        "  payload bytes,\n"
        f"{metadata}"
        # A record without a readable event_time gets the epoch: it never advances the watermark, and a
        # null rowtime would fail the job. The full parse sends such records to the dead letters.
        "  event_ts as coalesce(event_time_of(payload), timestamp '1970-01-01 00:00:00.000'),\n"
        f"  watermark for event_ts as {_watermark_time(config)}"
        f" - interval '{config.watermark_delay_s}' second\n"
        f") with (\n  {_with_clause(options)}\n)"
    )


# UTC wall-clock TIMESTAMP(3), like event_ts (the session time zone is UTC).
_ARRIVAL_TIME = "cast(arrival_time as timestamp(3))"


def _watermark_time(config: JobConfig) -> str:
    """What one record moves the watermark to (less the delay): only a record the job accepts moves it.

    The watermark is declared on the source, before the parse in the plan, so watermark_time asks the
    parser for the record's verdict (which the parse then reuses: one parse per record). A dead letter
    counts as the epoch, which never advances the watermark; an accepted time counts no later than the
    record's arrival.
    """
    return (
        f"coalesce(watermark_time(payload, {_ARRIVAL_TIME}, {config.max_future_skew_s},"
        f" {config.max_event_age_s}), timestamp '1970-01-01 00:00:00.000')"
    )


def lake_sink_ddl(
    table: lake.LakeTable, lake_dir: str, extra_options: tuple[tuple[str, str], ...] = ()
) -> str:
    columns = ",\n  ".join(f"`{name}` {flink_type}" for name, flink_type in table.columns)
    options = {
        "connector": "filesystem",
        "path": str(table.path(lake_dir).resolve()),
        "format": "parquet",
        "parquet.compression": "SNAPPY",
        # INT64 timestamps in milliseconds, as the TIMESTAMP(3) columns hold and batch_lake writes, not
        # Flink's default legacy INT96 (deprecated in Parquet; some readers mistake its zone or drop it).
        "parquet.write.int64.timestamp": "true",
        "parquet.timestamp.time.unit": "millis",
        # Parquet is a bulk format: files roll on every checkpoint, which is also when they commit.
        # A partition gets its _SUCCESS marker once the watermark passes its hour (+1 h for late data),
        # which is what incremental readers wait for.
        "sink.partition-commit.trigger": "partition-time",
        "partition.time-extractor.timestamp-pattern": "$dt $hr:00:00",
        "sink.partition-commit.delay": "1 h",
        "sink.partition-commit.policy.kind": "success-file",
        **dict(extra_options),
    }
    return (
        f"create temporary table lake_{table.name} (\n  {columns}\n)"
        f" partitioned by ({', '.join(lake.PARTITION_COLUMNS)})"
        f" with (\n  {_with_clause(options)}\n)"
    )


def dead_letter_topic_ddl(config: JobConfig) -> str:
    options = {
        "connector": "kafka",
        "topic": config.dlq_topic,
        "properties.bootstrap.servers": config.bootstrap_servers,
        "format": "json",
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": f"{config.group_id}-dlq",
        # Must not exceed the broker's transaction.max.timeout.ms (15 min by default).
        "properties.transaction.timeout.ms": "900000",
    }
    return (
        "create temporary table dead_letter_topic (\n"
        "  reason string,\n  `raw` string,\n  source_topic string,\n"
        "  source_partition int,\n  source_offset bigint,\n  event_time string,\n  failed_at string\n"
        f") with (\n  {_with_clause(options)}\n)"
    )


FUNCTION_DDL = (
    "create temporary system function event_time_of as 'io.usagewatch.udf.EventTimeOf' language java",
    "create temporary system function parse_access_event"
    " as 'io.usagewatch.udf.ParseAccessEvent' language java",
    "create temporary system function watermark_time as 'io.usagewatch.udf.WatermarkTime' language java",
)

_PARSED_FIELDS = (
    "error",
    "`raw`",
    *(name for name, _ in lake.EVENTS.columns if name not in lake.PARTITION_COLUMNS),
)

_IS_LATE = (
    "coalesce(floor(event_ts to minute) + interval '1' minute - interval '0.001' second"
    " <= current_watermark(event_ts), false)"
)

# The views over the one parse, read by the outputs (see view_ddl).
_DERIVED_VIEWS = (
    "create temporary view parsed_events as\nselect event_ts,\n  "
    + ",\n  ".join(f"parsed.{name} as {name}" for name in _PARSED_FIELDS)
    + "\nfrom parsed_records",
    "create temporary view valid_events as select * from parsed_events where error is null",
    # A window drops an event once it has fired, i.e. once the watermark reached window_end - 1 ms
    # (Flink's rule). Splitting on exactly that rule before the windows means they never drop anything
    # silently: every valid event is aggregated or lands in late_events, and always in the archive.
    # Before the first watermark current_watermark() is null: nothing is late yet.
    f"create temporary view on_time_events as select * from valid_events where not ({_IS_LATE})",
    "create temporary view late_arrivals as\n"
    "select *, current_watermark(event_ts) as watermark_at_arrival\n"
    f"from valid_events where {_IS_LATE}",
)


def view_ddl(config: JobConfig) -> tuple[str, ...]:
    """One parse per record. parse_access_event is declared non-deterministic, so the planner never copies
    the call into each field access; and every output reads only (event_ts, parsed), so all sinks share
    this one projection instead of each branch pruning its own copy of the call. The parse also applies
    the event-time bounds, against the arrival time (see source_ddl)."""
    parse = (
        f"parse_access_event(payload, kafka_partition, kafka_offset, {_ARRIVAL_TIME},"
        f" {config.max_future_skew_s}, {config.max_event_age_s})"
    )
    parsed_records = f"create temporary view parsed_records as\nselect event_ts, {parse} as parsed\n"
    return (parsed_records + "from access_events_source", *_DERIVED_VIEWS)


# The event time of a dead letter when it had a readable one (the epoch stands for "none").
_DEAD_LETTER_EVENT_TIME = "case when event_ts > timestamp '1970-01-01 00:00:00.000' then event_ts end"


def _partition_of(time_column: str) -> str:
    return f"date_format({time_column}, 'yyyy-MM-dd') as dt, date_format({time_column}, 'HH') as hr"


def _events_insert() -> str:
    columns = ", ".join(name for name, _ in lake.EVENTS.columns if name not in lake.PARTITION_COLUMNS)
    return f"insert into lake_events\nselect {columns}, {_partition_of('event_ts')}\nfrom valid_events"


def _late_events_insert() -> str:
    columns = ", ".join(name for name, _ in lake.LATE_EVENTS.columns if name not in lake.PARTITION_COLUMNS)
    return f"insert into lake_late_events\nselect {columns}, {_partition_of('event_ts')}\nfrom late_arrivals"


def _one_minute_windows() -> str:
    return "table(tumble(table on_time_events, descriptor(event_ts), interval '1' minute))"


WINDOW_AGGREGATES = {
    "account_minute": """
  account_id,
  count(*) as requests,
  sum(input_tokens) as input_tokens,
  sum(output_tokens) as output_tokens,
  count(distinct source_ip) as distinct_ips,
  count(distinct country) as distinct_countries,
  count(distinct asn) as distinct_asns,
  count(distinct prompt_fingerprint) as distinct_prompt_fingerprints,
  -- tags come from the upstream classifier; this one marks prompts that ask for step-by-step reasoning
  sum(case when array_contains(request_tags, 'reasoning_elicitation') then 1 else 0 end)
    as reasoning_requests,
  sum(case when status_code >= 400 then 1 else 0 end) as error_requests,
  min(event_time) as first_seen,
  max(event_time) as last_seen""",
    "country_minute": """
  country,
  count(*) as requests,
  count(distinct account_id) as distinct_accounts,
  sum(input_tokens) as input_tokens,
  sum(output_tokens) as output_tokens""",
    "ip_minute": """
  source_ip,
  asn,
  asn_type,
  count(*) as requests,
  count(distinct account_id) as distinct_accounts,
  count(distinct org_id) as distinct_orgs""",
    "asn_minute": """
  asn,
  asn_type,
  count(*) as requests,
  count(distinct account_id) as distinct_accounts,
  count(distinct org_id) as distinct_orgs,
  count(distinct source_ip) as distinct_ips""",
}

WINDOW_KEYS = {
    "account_minute": "account_id",
    "country_minute": "country",
    "ip_minute": "source_ip, asn, asn_type",
    "asn_minute": "asn, asn_type",
}


def _window_insert(table: lake.LakeTable) -> str:
    return (
        f"insert into lake_{table.name}\n"
        f"select\n  window_start,\n  window_end,{WINDOW_AGGREGATES[table.name]},\n"
        f"  {_partition_of('window_start')}\n"
        f"from {_one_minute_windows()}\n"
        f"group by window_start, window_end, {WINDOW_KEYS[table.name]}"
    )


def _rfc3339(timestamp_expression: str) -> str:
    return f"date_format({timestamp_expression}, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')"


def _dead_letter_insert(config: JobConfig) -> str:
    if config.source == "kafka":
        return (
            "insert into dead_letter_topic\n"
            f"select error as reason, `raw`, {_quote(config.topic)} as source_topic,\n"
            "  kafka_partition as source_partition, kafka_offset as source_offset,\n"
            f"  {_rfc3339(_DEAD_LETTER_EVENT_TIME)} as event_time,"
            f" {_rfc3339('current_timestamp')} as failed_at\n"
            "from parsed_events where error is not null"
        )
    return (
        "insert into lake_dead_letters\n"
        f"select error as reason, `raw`, {_DEAD_LETTER_EVENT_TIME} as event_time,"
        " localtimestamp as failed_at,\n"
        f"  {_partition_of('localtimestamp')}\n"
        "from parsed_events where error is not null"
    )


def statements(config: JobConfig) -> tuple[list[str], list[str]]:
    """(DDL to execute, INSERTs to run together as one statement set)."""
    sink_tables = [lake.EVENTS, *WINDOWED_TABLES, lake.LATE_EVENTS]
    if config.source == "file":
        sink_tables.append(lake.DEAD_LETTERS)
    ddl = [*FUNCTION_DDL, source_ddl(config), *view_ddl(config)]
    ddl += [lake_sink_ddl(table, config.lake_dir, config.lake_options) for table in sink_tables]
    if config.source == "kafka":
        ddl.append(dead_letter_topic_ddl(config))
    inserts = [
        _events_insert(),
        *(_window_insert(t) for t in WINDOWED_TABLES),
        _late_events_insert(),
        _dead_letter_insert(config),
    ]
    return ddl, inserts


# --- running the job locally (embedded MiniCluster in a child process) ---------------------------------


def job_command(job_args: list[str]) -> list[str]:
    return [sys.executable, str(JOB_SCRIPT), *job_args]


def job_environment() -> dict[str, str]:
    """The job process's environment: PyFlink's gateway reads LOG4J_PROPERTIES and FLINK_LOG_DIR when it
    starts the JVM, so the JVM logs to JOB_RUN_DIR and only its warnings reach the console. A caller's own
    settings win."""
    JOB_RUN_DIR.mkdir(parents=True, exist_ok=True)
    return {
        "LOG4J_PROPERTIES": str(JOB_LOG4J_PROPERTIES),
        "FLINK_LOG_DIR": str(JOB_RUN_DIR),
        **os.environ,
    }


def run_job(job_args: list[str]) -> int:
    """Run the job in the foreground (bounded jobs return when the input is consumed)."""
    return subprocess.call(job_command(job_args), cwd=paths.REPO_ROOT, env=job_environment())


def _pid_file() -> Path:
    return JOB_RUN_DIR / "job.pid"


def running_job_pid() -> int | None:
    return processes.running_pid(_pid_file(), str(JOB_SCRIPT))


def start_detached(job_args: list[str]) -> int:
    """Start the streaming job in the background; its log goes to .run/job/job.log."""
    existing = running_job_pid()
    if existing:
        raise processes.ProcessError(f"the aggregation job already runs (pid {existing}); stop it first")
    process = processes.spawn(job_command(job_args), JOB_LOG, env=job_environment(), cwd=paths.REPO_ROOT)
    _pid_file().write_text(str(process.pid))
    return process.pid


def stop_detached(timeout_s: float = 30) -> bool:
    """Stop the job this project started (and only it), with the JVM it started (its process group).
    Returns whether one was running."""
    return processes.stop_recorded(_pid_file(), str(JOB_SCRIPT), timeout=timeout_s, group=True) is not None
