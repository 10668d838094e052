"""The Parquet lake's layout: one source of truth for the Flink sinks and the DuckDB views.

Every table is hive-partitioned by ``dt`` (YYYY-MM-DD, UTC) and ``hr`` (HH, UTC). Flink's filesystem
sink names finished files ``part-*`` and keeps in-progress ones hidden (leading dot), so a reader that
globs ``part-*`` sees committed data only — exactly once — and never a ``_SUCCESS`` marker.

Why ``part-*`` and not ``*.parquet``: Flink 2.2's SQL filesystem sink gives its files a part prefix only
(FileSystemTableSink sets ``OutputFileConfig.withPartPrefix("part-" + uuid)``; no table option sets a
suffix), so job files have no extension. The DuckDB batch (batch_lake.py) and `usagewatch compact` write
``part-*.parquet``, which the same glob matches. Timestamps are INT64 milliseconds in both
(flink_job.lake_sink_ddl), never the legacy INT96.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.infra.config import Config

PARTITION_COLUMNS = ("dt", "hr")
# Committed data files start with this; in-progress ones are hidden (leading dot).
PART_FILE_PREFIX = "part-"
COMMITTED_FILE_GLOB = f"{PART_FILE_PREFIX}*"
# Flink's partition-commit marker (success-file policy, see flink_job.py): the partition is closed.
SUCCESS_FILE = "_SUCCESS"
# Partition folder names; anything else under a table folder is not a partition.
_DAY_FOLDER = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
_HOUR_FOLDER = re.compile(r"^hr=(\d{2})$")
LAKE_KEYS = {"path"}


def sql_string_literal(value: str) -> str:
    """Quote a value as a SQL string literal (single quotes doubled), safe inside generated SQL."""
    return "'" + value.replace("'", "''") + "'"


def lake_path(config: Config, override: str | Path | None = None) -> Path:
    """Where the lake is: the --lake given, else lake.path of the configuration (relative to its file)."""
    if override:
        return Path(override)
    value = config.section("lake", LAKE_KEYS).get("path")
    if not isinstance(value, str) or not value:
        raise config.error("lake", "lake.path must be a directory path", "path")
    return config.resolve(value)


# Flink SQL type -> the Arrow type Flink's Parquet writer produces (timestamps: no zone, values UTC).
ARROW_TYPES = {
    "STRING": pa.string(),
    "TIMESTAMP(3)": pa.timestamp("ms"),
    "BIGINT": pa.int64(),
    "INT": pa.int32(),
    "DOUBLE": pa.float64(),
    "ARRAY<STRING>": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class LakeTable:
    name: str
    description: str
    # (column, Flink SQL type); the partition columns dt/hr come last and are STRING.
    columns: tuple[tuple[str, str], ...]

    def path(self, lake_dir: str | Path) -> Path:
        return Path(lake_dir) / self.name

    def arrow_schema(self) -> pa.Schema:
        """The schema of this table's Parquet files (partition columns live in folder names only)."""
        return pa.schema(
            [(name, ARROW_TYPES[kind]) for name, kind in self.columns if name not in PARTITION_COLUMNS]
        )

    def glob(self, lake_dir: str | Path) -> str:
        """DuckDB read_parquet glob over committed files of every partition."""
        return str(self.path(lake_dir) / "dt=*" / "hr=*" / COMMITTED_FILE_GLOB)

    def committed_files(self, lake_dir: str | Path) -> TableFiles:
        """The table's committed files, split into readable Parquet and the files readers must skip."""
        return scan_files(
            self.path(lake_dir), sorted(self.path(lake_dir).glob(f"dt=*/hr=*/{COMMITTED_FILE_GLOB}"))
        )


@dataclass(frozen=True)
class UnreadableFile:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class TableFiles:
    readable: list[Path]
    unreadable: list[UnreadableFile]


def scan_files(table_dir: Path, files: list[Path]) -> TableFiles:
    """Split committed files into Parquet files inside `table_dir` and the rest, each with its reason.

    A foreign, truncated or corrupt file (no Parquet footer, or one that does not parse) would make
    every query over its table fail, and a symlink out of the table would be refused by the analyst
    sandbox, so readers skip these and report them by name. Reading the footer costs ~25 us a file.
    """
    root = table_dir.resolve()
    readable, unreadable = [], []
    for path in files:
        target = path.resolve()
        if not target.is_relative_to(root):
            unreadable.append(UnreadableFile(path, "links outside the lake table"))
        elif not target.is_file():
            unreadable.append(UnreadableFile(path, "not a regular file"))
        else:
            try:
                pq.read_metadata(target)
                readable.append(path)
            except (OSError, ValueError) as error:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
                unreadable.append(UnreadableFile(path, f"not a readable Parquet file ({error})"))
    return TableFiles(readable, unreadable)


_WINDOW = (("window_start", "TIMESTAMP(3)"), ("window_end", "TIMESTAMP(3)"))
_PARTITIONS = (("dt", "STRING"), ("hr", "STRING"))

EVENTS = LakeTable(
    "events",
    "Raw archive: every valid access event, all contract fields typed, unknown fields kept in extras.",
    (
        ("event_id", "STRING"),
        ("event_time", "TIMESTAMP(3)"),
        ("account_id", "STRING"),
        ("api_key_id", "STRING"),
        ("org_id", "STRING"),
        ("source_ip", "STRING"),
        ("country", "STRING"),
        ("latitude", "DOUBLE"),
        ("longitude", "DOUBLE"),
        ("asn", "BIGINT"),
        ("asn_type", "STRING"),
        ("model", "STRING"),
        ("endpoint", "STRING"),
        ("input_tokens", "BIGINT"),
        ("output_tokens", "BIGINT"),
        ("status_code", "INT"),
        ("latency_ms", "BIGINT"),
        ("prompt_fingerprint", "STRING"),
        ("payment_fingerprint", "STRING"),
        ("user_agent", "STRING"),
        ("request_tags", "ARRAY<STRING>"),
        ("extras", "STRING"),
        ("kafka_partition", "INT"),
        ("kafka_offset", "BIGINT"),
        *_PARTITIONS,
    ),
)

ACCOUNT_MINUTE = LakeTable(
    "account_minute",
    "1-minute tumbling aggregates per account.",
    (
        *_WINDOW,
        ("account_id", "STRING"),
        ("requests", "BIGINT"),
        ("input_tokens", "BIGINT"),
        ("output_tokens", "BIGINT"),
        ("distinct_ips", "BIGINT"),
        ("distinct_countries", "BIGINT"),
        ("distinct_asns", "BIGINT"),
        ("distinct_prompt_fingerprints", "BIGINT"),
        ("reasoning_requests", "BIGINT"),
        ("error_requests", "BIGINT"),
        ("first_seen", "TIMESTAMP(3)"),
        ("last_seen", "TIMESTAMP(3)"),
        *_PARTITIONS,
    ),
)

COUNTRY_MINUTE = LakeTable(
    "country_minute",
    "1-minute tumbling aggregates per country (null country = unknown geo).",
    (
        *_WINDOW,
        ("country", "STRING"),
        ("requests", "BIGINT"),
        ("distinct_accounts", "BIGINT"),
        ("input_tokens", "BIGINT"),
        ("output_tokens", "BIGINT"),
        *_PARTITIONS,
    ),
)

IP_MINUTE = LakeTable(
    "ip_minute",
    "1-minute tumbling aggregates per source IP.",
    (
        *_WINDOW,
        ("source_ip", "STRING"),
        ("asn", "BIGINT"),
        ("asn_type", "STRING"),
        ("requests", "BIGINT"),
        ("distinct_accounts", "BIGINT"),
        ("distinct_orgs", "BIGINT"),
        *_PARTITIONS,
    ),
)

ASN_MINUTE = LakeTable(
    "asn_minute",
    "1-minute tumbling aggregates per ASN.",
    (
        *_WINDOW,
        ("asn", "BIGINT"),
        ("asn_type", "STRING"),
        ("requests", "BIGINT"),
        ("distinct_accounts", "BIGINT"),
        ("distinct_orgs", "BIGINT"),
        ("distinct_ips", "BIGINT"),
        *_PARTITIONS,
    ),
)

LATE_EVENTS = LakeTable(
    "late_events",
    "Valid events that arrived after their one-minute window had closed: archived in events like every"
    " event, left out of the *_minute aggregates, and counted here with the watermark they missed.",
    (
        *((name, flink_type) for name, flink_type in EVENTS.columns if name not in PARTITION_COLUMNS),
        ("watermark_at_arrival", "TIMESTAMP(3)"),
        *_PARTITIONS,
    ),
)

DEAD_LETTERS = LakeTable(
    "dead_letters",
    "Malformed input from a replay (a streaming job sends these to the dead-letter topic instead).",
    (
        ("reason", "STRING"),
        ("raw", "STRING"),
        ("event_time", "TIMESTAMP(3)"),
        ("failed_at", "TIMESTAMP(3)"),
        *_PARTITIONS,
    ),
)

# The events table starts with the contract's fields (plus extras) in the parser's output order.
EVENTS_CONTRACT_FIELDS = 22

TABLES = (EVENTS, ACCOUNT_MINUTE, COUNTRY_MINUTE, IP_MINUTE, ASN_MINUTE, LATE_EVENTS, DEAD_LETTERS)


def is_lake(lake_dir: str | Path) -> bool:
    """A lake has at least one of the tables' folders; anything else (/, /proc, a home) is not one."""
    return any(table.path(lake_dir).is_dir() for table in TABLES)


def unreadable_files(lake_dir: str | Path, tables=TABLES) -> list[UnreadableFile]:
    """Every committed file that readers skip: corrupt, truncated, not Parquet, or linking elsewhere."""
    return [bad for table in tables for bad in table.committed_files(lake_dir).unreadable]


# --- partitions: which exist, which hold committed files, which are closed -------------------------


class PartitionHour:
    """The hour a dt=/hr= partition covers, as naive UTC datetimes (the lake's timestamp convention)."""

    dt: str
    hr: str

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.strptime(f"{self.dt} {self.hr}", "%Y-%m-%d %H")

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(hours=1)


@dataclass(frozen=True)
class PartitionFolder(PartitionHour):
    """One hour of one table: <lake>/<table>/dt=YYYY-MM-DD/hr=HH."""

    table: LakeTable
    dt: str
    hr: str
    path: Path

    @property
    def closed(self) -> bool:
        """Flink committed the partition (success marker): no file will be appended to it."""
        return (self.path / SUCCESS_FILE).exists()

    def committed_files(self) -> list[Path]:
        return sorted(self.path.glob(COMMITTED_FILE_GLOB))


def partitions(table: LakeTable, lake_dir: str | Path, day: str | None = None) -> list[PartitionFolder]:
    """The table's partition folders (of one day, YYYY-MM-DD, if given), oldest first."""
    found = []
    for day_folder in sorted(table.path(lake_dir).glob("dt=*")):
        day_match = _DAY_FOLDER.match(day_folder.name)
        if not day_match or (day and day_match.group(1) != day):
            continue
        for hour_folder in sorted(day_folder.glob("hr=*")):
            hour_match = _HOUR_FOLDER.match(hour_folder.name)
            if hour_match:
                found.append(PartitionFolder(table, day_match.group(1), hour_match.group(1), hour_folder))
    return found


def closed_partitions(table: LakeTable, lake_dir: str | Path) -> list[Path]:
    """The folders of the table's closed partitions (see PartitionFolder.closed), oldest first."""
    return [partition.path for partition in partitions(table, lake_dir) if partition.closed]
