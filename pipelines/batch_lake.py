"""The job's lake built as one DuckDB batch from a JSONL file (`usagewatch replay --engine duckdb`).

`build_lake(events_jsonl, lake_dir)` writes what `usagewatch replay` (the Flink job over a file) writes
for the same input — `events`, the four `*_minute` tables, `dead_letters`, an empty `late_events` —
with the layout of `pipelines/lake.py`, so `sql`, `detect` and `validate` read it unchanged. It exists
for throughput (evaluation sweeps over dozens of corpora; the benchmark's batch reference): one process,
no JVM, no checkpoints. `tests/test_batch_lake.py` proves every table equal to the job's, row for row.

How it reproduces the job:

* **Records** are cut like Flink's line reader for the file source: on `\\n`, one trailing `\\r`
  dropped, empty lines kept (they are records, and dead letters), bytes decoded as UTF-8 with malformed
  sequences replaced by U+FFFD (Java's decoder does the same).
* **Parse.** DuckDB parses every record once and checks it against the rules of the job's parser
  (`io.usagewatch.udf.ParseAccessEvent`). A record it cannot vouch for — not JSON, any rule broken,
  fields outside the contract, an unusual spelling such as `12.0` for an integer — gets the verdict of
  the Python contract check (`pipelines.contracts.validate_event`, plus the resource bounds the
  schema's description states and the parser's rejection of duplicate keys and NaN): a dead letter with
  the contract's reason, or a valid event (whose unknown fields become `extras`, compact JSON in input
  order). Valid events take their typed values from DuckDB either way.
* **Aggregates** run the job's own aggregate expressions (`flink_job.WINDOW_AGGREGATES`, grouped by
  `flink_job.WINDOW_KEYS`) over one-minute tumbling windows.
* **Kafka columns** (`kafka_partition`, `kafka_offset`) are null, as in the job's file replay.
* **Dead letters**: `reason` is the contract check's wording, not the Java parser's; `failed_at` is the
  build's start (wall clock, UTC) and partitions the table; `event_time` is the record's top-level
  `event_time` when it is readable before the record breaks, as the job's watermark extractor reads it.
* **Late events.** A batch has no watermark: every valid event is treated as on time and aggregated, and
  `late_events` stays empty. For input whose disorder stays within the job's bound (10 s by default,
  what the generator produces) that is exactly what the job does. An event further behind than the bound
  is where the two differ: the job archives it and lists it in `late_events` but leaves it out of the
  windows, the batch counts it in its window.

Partitions are written under a hidden staging directory, moved into the lake one whole file at a time,
and then marked `_SUCCESS` (the job's commit marker), so a reader globbing `part-*` never sees a
partial file and a failed build leaves nothing behind. Building into a lake that already has data
appends, as a second replay would.

Not reproduced, for hostile input only: the Java parser's exact dead-letter wording; `extras` spelling
of numbers Jackson writes differently from Python (`1.0E20` vs `1e+20`); a record the contract accepts
but DuckDB's JSON reader cannot read (a lone UTF-16 surrogate escape) goes to the dead letters, where
the job would archive it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipelines import lake
from pipelines.analyst import sql_string_literal
from pipelines.contracts import ACCESS_EVENT_SCHEMA, ContractViolation, load_schema, validate_event
from pipelines.flink_job import WINDOW_AGGREGATES, WINDOW_KEYS, WINDOWED_TABLES

# The resource bounds the schema's description states (enforced by the job's parser).
MAX_RECORD_CHARS = 1_000_000  # UTF-16 code units, as Java counts a string's length
MAX_NESTING_DEPTH = 32  # the event object itself is level 1
MAX_NUMBER_LITERAL_CHARS = 1000

# The contract's fields (the events columns before extras), in the parser's order.
CONTRACT_FIELDS = tuple(name for name, _ in lake.EVENTS.columns[: lake.EVENTS_CONTRACT_FIELDS - 1])
LONG_MAX = 2**63 - 1

# Input is handed to DuckDB in slices of about this many bytes (whole lines), so memory stays bounded
# by the slice, not the file.
READ_CHUNK_BYTES = 64 << 20
# Rows per Arrow batch handed to the Parquet writer, and its largest row group.
ROWS_PER_BATCH = 128 * 1024


class BatchLakeError(RuntimeError):
    """The input cannot be read (missing, a directory, unreadable) or the lake cannot be written."""


@dataclass(frozen=True)
class BatchLakeReport:
    input_path: Path
    lake_dir: Path
    records: int  # lines read, valid or not
    events: int  # archived in events
    dead_letters: int
    rows: dict[str, int] = field(default_factory=dict)  # rows written per lake table
    partitions: int = 0  # partitions written (each marked _SUCCESS)
    seconds: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        tables = ", ".join(f"{name} {count:,}" for name, count in self.rows.items())
        return (
            f"{self.input_path} -> {self.lake_dir}: {self.records:,} records, {self.events:,} events,"
            f" {self.dead_letters:,} dead letters in {self.seconds:.2f} s"
            f" ({self.records_per_s:,.0f} records/s); rows: {tables}; {self.partitions} partitions"
        )


# --- reading records as the job's file source cuts them -------------------------------------------------


def _record_slices(path: Path) -> Iterator[pa.RecordBatch]:
    """(line_no, raw) batches of the file's records, about READ_CHUNK_BYTES each, in file order."""
    line_no = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(READ_CHUNK_BYTES)
            data = carry + chunk
            if not chunk:
                if data:  # the last record has no newline
                    yield _batch(data + b"\n", line_no)
                return
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                batch = _batch(data[:cut], line_no)
                line_no += batch.num_rows
                yield batch


def _batch(data: bytes, first_line_no: int) -> pa.RecordBatch:
    """Records of `data` (whole lines, each ending in \\n): zero-copy Arrow strings, newline stripped."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buffer == ord("\n"))
    offsets = np.concatenate(([0], ends + 1)).astype(np.int64)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # Java decodes malformed UTF-8 to U+FFFD; newlines are ASCII, so each line is repaired alone.
        lines = [line.decode("utf-8", errors="replace") + "\n" for line in data.split(b"\n")[:-1]]
        raw = pa.array(lines, pa.large_string())
    else:
        raw = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    # Flink's line reader drops the \n and one \r before it.
    raw = pc.replace_substring_regex(raw, pattern="\r?\n$", replacement="")
    line_no = pa.array(np.arange(first_line_no + 1, first_line_no + 1 + len(ends), dtype=np.int64))
    return pa.RecordBatch.from_arrays([line_no, raw], names=["line_no", "raw"])


# --- the parse: DuckDB for records it can vouch for, the contract check for the rest -------------------

# RFC 3339 UTC with exactly milliseconds, as the parser's event-time reader requires ([0-9], not \d: in
# Python \d also matches other scripts' digits).
EVENT_TIME_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%gZ"  # DuckDB strptime: %g is milliseconds
IPV4_PATTERN = (
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)
ASN_TYPES = tuple(
    value for value in load_schema(ACCESS_EVENT_SCHEMA)["properties"]["asn_type"]["enum"] if value
)


# Each contract field is read as JSON text, as DuckDB re-writes it: compact, escapes resolved except
# where JSON needs them. Its type then shows in the text itself, which is much cheaper than asking
# DuckDB's JSON functions to parse every value again.


def _is_string(name: str) -> str:
    return f"starts_with(doc.{name}, '\"')"


def _text(name: str) -> str:
    # Without a backslash the JSON string is its value between the quotes.
    return f"(case when contains(doc.{name}, '\\') then doc.{name} ->> '$' else doc.{name}[2:-2] end)"


def _string(name: str, condition: str | None = None, required: bool = False) -> str:
    """A string field's rule; absent and JSON null are the same thing to the parser."""
    present = f"({_is_string(name)} and {condition})" if condition else _is_string(name)
    if required:
        return f"({present} and doc.{name} <> '\"\"')"
    return f"(doc.{name} is null or {present})"


def _long(name: str) -> str:
    # A plain non-negative integer literal that fits a long; 12.0 or 1e2 are left to the contract check.
    return (
        f"(regexp_full_match(doc.{name}, '[0-9]+') and try_cast(doc.{name}::varchar as bigint) is not null)"
    )


def _count(name: str, required: bool = False) -> str:
    return _long(name) if required else f"(doc.{name} is null or {_long(name)})"


def _coordinate(name: str, bound: int) -> str:
    # NaN and infinities (which DuckDB's reader accepts, Jackson does not) fail the range check.
    return (
        f"(doc.{name} is null or (regexp_matches(doc.{name}, '^-?[0-9]')"
        f" and try_cast(doc.{name}::varchar as double) between -{bound} and {bound}))"
    )


def _number(name: str, sql_type: str) -> str:
    return f"try_cast(doc.{name} as {sql_type})"


def _quoted_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(sql_string_literal(value) for value in values) + "]"


# A JSON array of non-empty strings, as DuckDB writes it back (compact).
_TAGS_PATTERN = r'\[("([^"\\]|\\.)+"(,"([^"\\]|\\.)+")*)?\]'

# field -> (typed value for any record the contract accepts, the parser's rule in the plain spelling).
# Typed values use try_cast so that no record can fail the query; broken records are filtered out.
FIELD_SQL: dict[str, tuple[str, str]] = {
    "event_id": (_text("event_id"), _string("event_id", required=True)),
    "event_time": (
        f"try_strptime({_text('event_time')}, '{EVENT_TIME_FORMAT}')",
        _string(
            "event_time",
            f"regexp_full_match({_text('event_time')}, '{EVENT_TIME_PATTERN}')"
            f" and try_strptime({_text('event_time')}, '{EVENT_TIME_FORMAT}') is not null",
            required=True,
        ),
    ),
    "account_id": (_text("account_id"), _string("account_id", required=True)),
    "api_key_id": (_text("api_key_id"), _string("api_key_id", required=True)),
    "org_id": (_text("org_id"), _string("org_id")),
    # IPv6 addresses are checked once per distinct address, in Python (see _valid_ipv6).
    "source_ip": (_text("source_ip"), _string("source_ip", required=True)),
    "country": (_text("country"), _string("country", f"regexp_full_match({_text('country')}, '[A-Z]{{2}}')")),
    "latitude": (_number("latitude", "double"), _coordinate("latitude", 90)),
    "longitude": (_number("longitude", "double"), _coordinate("longitude", 180)),
    "asn": (_number("asn", "bigint"), _count("asn")),
    "asn_type": (_text("asn_type"), _string("asn_type", f"{_text('asn_type')} in {tuple(ASN_TYPES)}")),
    "model": (_text("model"), _string("model", required=True)),
    "endpoint": (_text("endpoint"), _string("endpoint", required=True)),
    "input_tokens": (_number("input_tokens", "bigint"), _count("input_tokens", required=True)),
    "output_tokens": (_number("output_tokens", "bigint"), _count("output_tokens", required=True)),
    "status_code": (
        _number("status_code", "integer"),
        f"({_long('status_code')} and try_cast(doc.status_code::varchar as bigint) between 100 and 599)",
    ),
    "latency_ms": (_number("latency_ms", "bigint"), _count("latency_ms")),
    "prompt_fingerprint": (
        _text("prompt_fingerprint"),
        _string("prompt_fingerprint", f"regexp_full_match({_text('prompt_fingerprint')}, '[0-9a-f]+')"),
    ),
    "payment_fingerprint": (_text("payment_fingerprint"), _string("payment_fingerprint")),
    "user_agent": (_text("user_agent"), _string("user_agent")),
    # Absent or null tags are an empty list, as the parser makes them.
    "request_tags": (
        "case when doc.request_tags is null or doc.request_tags = '[]' then []::varchar[]"
        " else try_cast(doc.request_tags as varchar[]) end",
        f"(doc.request_tags is null or regexp_full_match(doc.request_tags, '{_TAGS_PATTERN}'))",
    ),
}


def _parse_sql() -> str:
    structure = "{" + ", ".join(f'"{name}": "JSON"' for name in CONTRACT_FIELDS) + "}"
    typed = ",\n    ".join(f"{FIELD_SQL[name][0]} as {name}" for name in CONTRACT_FIELDS)
    rules = "\n      and ".join(FIELD_SQL[name][1] for name in CONTRACT_FIELDS)
    return f"""
with objects as (
  -- json_valid first: the JSON functions raise on text that is not JSON
  select line_no, raw, case when json_valid(raw) then json_type(raw) = 'OBJECT' else false end as is_object
  from records
),
documents as materialized (
  -- one parse per record into the contract's fields, each kept as JSON so its type can be checked
  select line_no, raw, is_object,
    case when is_object then json_transform(raw, {sql_string_literal(structure)}) end as doc,
    case when is_object then json_keys(raw) end as keys
  from objects
),
checked as (
  select line_no, raw, is_object,
    {typed},
    coalesce(is_object
      -- DuckDB's reader tolerates trailing commas, Jackson does not
      and not regexp_matches(raw, ',[ \\t\\n\\r]*[\\]}}]')
      and strlen(raw) <= {MAX_RECORD_CHARS}
      -- no duplicate keys, and no field outside the contract (extras are the contract check's job)
      and len(keys) = len(list_distinct(keys))
      and list_has_all({_quoted_list(CONTRACT_FIELDS)}, keys)
      and {rules}, false) as plain,
    regexp_full_match(coalesce({_text("source_ip")}, ''), '{IPV4_PATTERN}') as ipv4
  from documents
)
-- The raw text is kept only where Python may need it: records not vouched for, and IPv6 sources.
select * exclude (raw), case when not (plain and ipv4) then raw end as raw
from checked
"""


# --- the contract check, for the records DuckDB did not vouch for ----------------------------------------

CONTRACT_PROPERTIES = frozenset(load_schema(ACCESS_EVENT_SCHEMA)["properties"])
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_EVENT_TIME = re.compile(EVENT_TIME_PATTERN)
_IPV6_CHARACTERS = re.compile(r"[0-9A-Fa-f:.]+")
_DECODER = json.JSONDecoder()


class _NotJson(ValueError):
    """JSON that the job's parser rejects though Python's reader would take it."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    event = dict(pairs)
    if len(event) < len(pairs):
        duplicate = next(key for index, (key, _) in enumerate(pairs) if key in dict(pairs[:index]))
        raise _NotJson(f"duplicate field {duplicate!r}")
    return event


def _bounded_number(convert):
    def parse(literal: str):
        if len(literal) > MAX_NUMBER_LITERAL_CHARS:
            raise _NotJson(f"number literal over {MAX_NUMBER_LITERAL_CHARS} characters")
        return convert(literal)

    return parse


def _not_a_number(literal: str):
    raise _NotJson(f"{literal} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of JSON containers: an object of scalars is 1."""
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(child) for child in children), default=0)
    return 0


def contract_verdict(raw: str) -> tuple[str | None, str | None]:
    """(dead-letter reason, None) for a record that breaks the contract, else (None, extras JSON or None).

    The contract is schemas/access_event.schema.json plus the resource bounds its description states;
    like the job's parser, duplicate keys and NaN/Infinity are not JSON.
    """
    if len(raw.encode("utf-16-le")) // 2 > MAX_RECORD_CHARS:
        return f"record too large: over {MAX_RECORD_CHARS} characters", None
    try:
        event = json.loads(
            raw,
            object_pairs_hook=_unique_keys,
            parse_int=_bounded_number(int),
            parse_float=_bounded_number(float),
            parse_constant=_not_a_number,
        )
        too_deep = _depth(event) > MAX_NESTING_DEPTH
    except (ValueError, RecursionError) as error:
        return f"invalid JSON: {error}", None
    if too_deep:
        return f"invalid JSON: nested deeper than {MAX_NESTING_DEPTH} levels", None
    try:
        validate_event(event)
    except ContractViolation as violation:
        return "; ".join(violation.violations), None
    extras = {key: value for key, value in event.items() if key not in CONTRACT_PROPERTIES}
    return None, (json.dumps(extras, separators=(",", ":"), ensure_ascii=False) if extras else None)


def leading_event_time(raw: str) -> datetime | None:
    """The record's top-level event_time, read field by field up to it (the job's EventTimeOf).

    A record broken after its event_time still has one; null when it has none or it is not RFC 3339
    UTC with milliseconds.
    """
    position = _JSON_WHITESPACE.match(raw).end()
    if raw[position : position + 1] != "{":
        return None
    position += 1
    try:
        while True:
            position = _JSON_WHITESPACE.match(raw, position).end()
            if raw[position : position + 1] != '"':
                return None
            key, position = _DECODER.raw_decode(raw, position)
            position = _JSON_WHITESPACE.match(raw, position).end()
            if raw[position : position + 1] != ":":
                return None
            position = _JSON_WHITESPACE.match(raw, position + 1).end()
            value, position = _DECODER.raw_decode(raw, position)
            if key == "event_time":
                if not isinstance(value, str) or not _EVENT_TIME.fullmatch(value):
                    return None
                return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
            position = _JSON_WHITESPACE.match(raw, position).end()
            if raw[position : position + 1] != ",":
                return None
            position += 1
    except ValueError:
        return None


def _valid_ipv6(address: str) -> bool:
    """The parser's IPv6 rule: only hex digits, colons and dots, and a valid address."""
    if ":" not in address or not _IPV6_CHARACTERS.fullmatch(address):
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


# --- the build -------------------------------------------------------------------------------------------

# What a record DuckDB cannot read gets, when the contract check has nothing against it.
UNREADABLE_REASON = "not readable by DuckDB's JSON reader (valid under the contract)"
_DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("line_no", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("event_time", pa.timestamp("ms")),
    ]
)


def _partition_of(time_column: str) -> str:
    return f"strftime({time_column}, '%Y-%m-%d') as dt, strftime({time_column}, '%H') as hr"


def _check_input(path: Path) -> None:
    if not path.exists():
        raise BatchLakeError(f"input file not found: {path}")
    if not path.is_file():
        raise BatchLakeError(f"input is not a file: {path}")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise BatchLakeError(f"cannot read input {path}: {error.strerror}") from error


def _record_reader(path: Path) -> pa.RecordBatchReader:
    schema = pa.schema([("line_no", pa.int64()), ("raw", pa.large_string())])
    return pa.RecordBatchReader.from_batches(schema, _record_slices(path))


def _judge_suspects(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """(extras of valid suspects, dead letters): the contract check over records DuckDB did not vouch for."""
    addresses = con.execute(
        "select distinct source_ip from parsed where plain and not ipv4 and source_ip is not null"
    ).fetchall()
    valid_ipv6 = pa.table({"source_ip": pa.array([a for (a,) in addresses if _valid_ipv6(a)], pa.string())})
    con.register("valid_ipv6", valid_ipv6)
    suspects = con.execute(
        "select line_no, raw, is_object from parsed"
        " where not (plain and (ipv4 or source_ip in (select source_ip from valid_ipv6)))"
        " order by line_no"
    ).fetchall()
    accepted: dict[str, list] = {"line_no": [], "extras": []}
    letters: dict[str, list] = {name: [] for name in _DEAD_LETTER_SCHEMA.names}
    for line_no, raw, is_object in suspects:
        reason, extras = contract_verdict(raw)
        if reason is None and not is_object:
            reason = UNREADABLE_REASON
        if reason is None:
            accepted["line_no"].append(line_no)
            accepted["extras"].append(extras)
        else:
            for name, value in zip(
                _DEAD_LETTER_SCHEMA.names, (line_no, reason, raw, leading_event_time(raw)), strict=True
            ):
                letters[name].append(value)
    accepted_table = pa.table(accepted, schema=pa.schema([("line_no", pa.int64()), ("extras", pa.string())]))
    return accepted_table, pa.table(letters, schema=_DEAD_LETTER_SCHEMA)


def _valid_events_sql() -> str:
    fields = ", ".join(f"parsed.{name}" for name in CONTRACT_FIELDS)
    return f"""
select {fields}, accepted.extras,
  -- a file has no Kafka coordinates: null, as in the job's file replay
  cast(null as integer) as kafka_partition, cast(null as bigint) as kafka_offset,
  {_partition_of("parsed.event_time")}
from parsed left join accepted on parsed.line_no = accepted.line_no
-- a record is valid when DuckDB vouched for it (not judged again) or the contract check accepted it
where accepted.line_no is not null
  or (parsed.plain and (parsed.ipv4 or parsed.source_ip in (select source_ip from valid_ipv6)))
"""


def _window_sql(table: lake.LakeTable) -> str:
    """The job's one-minute tumbling window for `table`, over every valid event (a batch has no lateness)."""
    return f"""
with windowed as (
  select *, time_bucket(interval 1 minute, event_time) as window_start,
    time_bucket(interval 1 minute, event_time) + interval 1 minute as window_end
  from valid_events
)
select window_start, window_end,{WINDOW_AGGREGATES[table.name]},
  {_partition_of("window_start")}
from windowed
group by window_start, window_end, {WINDOW_KEYS[table.name]}
"""


def _write(con: duckdb.DuckDBPyConnection, table: lake.LakeTable, query: str, staging: Path, tag: str) -> int:
    """Write the query's rows as `table`'s hive partitions under staging; returns the row count."""
    schema = table.arrow_schema()
    partition_schema = pa.schema([(name, pa.string()) for name in lake.PARTITION_COLUMNS])
    full_schema = pa.schema([*schema, *partition_schema])
    columns = ", ".join(full_schema.names)
    result = con.sql(f"select {columns} from ({query}) order by dt, hr").to_arrow_reader(ROWS_PER_BATCH)
    rows = 0

    def cast_batches() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in result:
            rows += batch.num_rows
            yield batch.cast(full_schema)

    ds.write_dataset(
        pa.RecordBatchReader.from_batches(full_schema, cast_batches()),
        staging / table.name,
        format="parquet",
        partitioning=ds.partitioning(partition_schema, flavor="hive"),
        basename_template=f"{lake.PART_FILE_PREFIX}batch-{tag}-{{i}}",
        file_options=ds.ParquetFileFormat().make_write_options(compression="snappy"),
        existing_data_behavior="overwrite_or_ignore",
        max_rows_per_group=ROWS_PER_BATCH,
    )
    return rows


def _publish(staging: Path, lake_dir: Path) -> int:
    """Move every staged file into the lake, then mark each partition _SUCCESS; returns the partitions."""
    partitions = sorted({path.parent for path in staging.glob(f"*/dt=*/hr=*/{lake.COMMITTED_FILE_GLOB}")})
    for partition in partitions:
        target = lake_dir / partition.relative_to(staging)
        target.mkdir(parents=True, exist_ok=True)
        for part_file in sorted(partition.glob(lake.COMMITTED_FILE_GLOB)):
            os.replace(part_file, target / part_file.name)  # one rename: a reader sees all of it or nothing
        (target / lake.SUCCESS_FILE).touch()
    return len(partitions)


def build_lake(events_jsonl: Path, lake_dir: Path) -> BatchLakeReport:
    """Build the job's lake for a JSONL file of access events with DuckDB (see the module docstring)."""
    started = time.perf_counter()
    events_jsonl, lake_dir = Path(events_jsonl), Path(lake_dir)
    _check_input(events_jsonl)
    # One dead-letter timestamp per build: the job stamps each record as it fails, a batch fails them at once.
    failed_at = datetime.now(UTC).replace(tzinfo=None)
    failed_at = failed_at.replace(microsecond=failed_at.microsecond // 1000 * 1000)
    tag = uuid.uuid4().hex
    staging = lake_dir / f".batch-{tag}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise BatchLakeError(f"cannot write the lake at {lake_dir}: {error.strerror}") from error
    con = duckdb.connect()
    try:
        # Spill to the lake's own disk if the input outgrows memory.
        con.execute(f"set temp_directory = {sql_string_literal(str(staging / '.spill'))}")
        con.register("records", _record_reader(events_jsonl))
        con.execute(f"create temp table parsed as {_parse_sql()}")
        accepted, dead_letters = _judge_suspects(con)
        con.register("accepted", accepted)
        con.register("dead_letter_records", dead_letters)
        con.execute(f"create temp table valid_events as {_valid_events_sql()}")
        (records,) = con.execute("select count(*) from parsed").fetchall()[0]
        rows = {lake.EVENTS.name: _write(con, lake.EVENTS, "select * from valid_events", staging, tag)}
        for table in WINDOWED_TABLES:
            rows[table.name] = _write(con, table, _window_sql(table), staging, tag)
        failed_at_sql = f"cast({sql_string_literal(failed_at.isoformat(sep=' '))} as timestamp)"
        rows[lake.DEAD_LETTERS.name] = _write(
            con,
            lake.DEAD_LETTERS,
            f"select reason, raw, event_time, {failed_at_sql} as failed_at, {_partition_of(failed_at_sql)}"
            " from dead_letter_records",
            staging,
            tag,
        )
        # Nothing is late in a batch; the table exists, empty, like the job's with no late arrivals.
        rows[lake.LATE_EVENTS.name] = 0
        lake.LATE_EVENTS.path(lake_dir).mkdir(parents=True, exist_ok=True)
        partitions = _publish(staging, lake_dir)
    except duckdb.Error as error:
        raise BatchLakeError(f"building the lake from {events_jsonl} failed: {error}") from error
    finally:
        con.close()
        shutil.rmtree(staging, ignore_errors=True)
    return BatchLakeReport(
        input_path=events_jsonl,
        lake_dir=lake_dir,
        records=records,
        events=rows[lake.EVENTS.name],
        dead_letters=rows[lake.DEAD_LETTERS.name],
        rows=rows,
        partitions=partitions,
        seconds=time.perf_counter() - started,
    )
