"""The job's overrides (--set, --source-option, --lake-option) and what they may not change.

One list, checked where a JobConfig is built and where the command line is parsed (commands/job_args),
so `job start` and `cluster submit` refuse an override before anything starts.
"""

from __future__ import annotations

# What the overrides (--set, --source-option, --lake-option) may not change: the job's guarantees rest on
# it. Everything else is tuning and stays open (the benchmark's what-ifs use it).
PROTECTED_OPTIONS = {
    "extra_settings": {
        "execution.checkpointing.mode": "the lake commits each event exactly once only with EXACTLY_ONCE",
        # bench what-if run, 2026-11-30: with mini-batch on, the late/on-time split before the windows put
        # every event on both sides; all 1M were counted in a window and in late_events too.
        "table.exec.mini-batch.enabled": "mini-batch made the late/on-time split count every event twice",
    },
    "source_options": {
        "connector": "the source is Kafka (--source)",
        "topic": "use --topic",
        "format": "the parser reads the raw record bytes itself",
        "properties.group.id": "use --group-id",
        "scan.startup.mode": "offsets come from the checkpoint or group; any other start skips or repeats",
        "properties.auto.offset.reset": "a new group starts at the earliest offset, or the backlog is lost",
        "properties.isolation.level": "read_committed keeps aborted producer transactions out of the lake",
    },
    "lake_options": {
        "connector": "the lake is Parquet files",
        "format": "the lake is Parquet files",
        "path": "every table lives under --lake, where readers and retention look",
        "sink.partition-commit.trigger": "_SUCCESS follows the watermark, which incremental readers wait for",
        "sink.partition-commit.policy.kind": "incremental readers wait for the _SUCCESS marker",
        "parquet.write.int64.timestamp": "readers expect INT64 millisecond timestamps",
        "parquet.timestamp.time.unit": "readers expect INT64 millisecond timestamps",
    },
}
# Each override's JobConfig field and its command-line flag (declared from this in commands/job_args).
OVERRIDE_FLAGS = {
    "extra_settings": "--set",
    "source_options": "--source-option",
    "lake_options": "--lake-option",
}


def refuse_protected_option(kind: str, key: str, value: str) -> None:
    """Raise ValueError for an override (kind: extra_settings, source_options or lake_options) of what the
    job's guarantees rest on, naming the flag, the key and why."""
    reason = PROTECTED_OPTIONS[kind].get(key.strip().lower())
    if reason:
        raise ValueError(f"{OVERRIDE_FLAGS[kind]} {key}={value} is refused: {reason}")
