"""The job's lake built as one DuckDB batch from a JSONL file (`usagewatch replay --engine duckdb`).

`build_lake(events_jsonl, lake_dir)` writes what `usagewatch replay` (the Flink job over a file) writes
for the same input — `events`, the four `*_minute` tables, `dead_letters`, an empty `late_events` —
with the layout of `pipelines/lake/layout.py`, so `sql`, `detect` and `validate` read it unchanged. It exists
for throughput (evaluation sweeps over dozens of corpora; the benchmark's batch reference): one process,
no JVM, no checkpoints. `tests/test_batch_lake.py` proves every table equal to the job's, row for row.

How it reproduces the job:

* **Records** are cut like Flink's line reader for the file source: on `\\n`, one trailing `\\r`
  dropped, empty lines kept (they are records, and dead letters), bytes decoded as UTF-8 with malformed
  sequences replaced by U+FFFD (where the job dead-letters the record: see the end of this docstring).
* **Parse.** DuckDB parses every record once and checks it against the rules of the job's parser
  (`io.usagewatch.udf.ParseAccessEvent`). A record it cannot vouch for — not JSON, any rule broken,
  fields outside the contract, an unusual spelling such as `12.0` for an integer — gets the verdict of
  the Python contract check (`pipelines.stream.contracts.validate_event`, plus the resource bounds the
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
of numbers Jackson writes differently from Python (`1.0E20` vs `1e+20`); where the Python contract check
and the Java parser disagree (a country `"US\\n"` or a fingerprint `"ab\\n"` passes the contract check,
whose patterns are Python's `re.search`; see tests/test_hostile_input.py) the batch follows the contract
check; a record the contract accepts but DuckDB's JSON reader cannot read (a lone UTF-16 surrogate
escape) goes to the dead letters with that reason, where the job would archive it. Nor the job's rules
beyond the contract: it dead-letters bytes that are not UTF-8 (raw base64-encoded), which the batch
repairs to U+FFFD and judges as text, and an event time more than its skew after or its horizon before
the file's modification time (see flink_job.JobConfig), which the batch archives.

One module (~690 lines) on purpose: it is one DuckDB program mirroring the job's statements step by
step, and the job-vs-batch equality test reads best against a single file.
"""

from __future__ import annotations

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

from pipelines.lake import layout as lake
from pipelines.lake.layout import sql_string_literal
from pipelines.stream.contracts import ACCESS_EVENT_SCHEMA, ContractViolation, load_schema, validate_event
from pipelines.stream.flink_job import WINDOW_AGGREGATES, WINDOW_KEYS, WINDOWED_TABLES

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
SCAN_BATCH_ROWS = 16_384
RECORD_SCHEMA = pa.schema([("line_no", pa.int64()), ("raw", pa.large_string())])


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
    stage_seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # (wall, CPU) per stage

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
    """Records of `data` (whole lines, each ending in \\n) as Arrow strings over the same bytes.

    Each record keeps its line end (no copy here); the parse strips it as Flink's line reader does.
    """
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    offsets = np.concatenate(([0], ends + 1)).astype(np.int64)
    raw = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        raw.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        # Repaired to U+FFFD (the job dead-letters such records instead); line ends are ASCII, so each
        # line is repaired alone.
        lines = [line.decode("utf-8", errors="replace") + "\n" for line in data.split(b"\n")[:-1]]
        raw = pa.array(lines, pa.large_string())
    line_no = pa.array(np.arange(first_line_no + 1, first_line_no + 1 + len(ends), dtype=np.int64))
    return pa.RecordBatch.from_arrays([line_no, raw], schema=RECORD_SCHEMA)


# --- the parse: DuckDB for records it can vouch for, the contract check for the rest -------------------

# RFC 3339 UTC with exactly milliseconds, as the parser's event-time reader requires ([0-9], not \d: in
# Python \d also matches other scripts' digits).
EVENT_TIME_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%gZ"  # DuckDB strptime: %g is milliseconds
IPV4_PATTERN = (
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)
# IPv6 in its hexadecimal forms (full, and compressed with ::); forms with an IPv4 tail are left to the
# contract check.
_H16 = "[0-9A-Fa-f]{1,4}"
IPV6_PATTERN = "|".join(
    [
        f"({_H16}:){{7}}{_H16}",
        f"({_H16}:){{1,7}}:",
        *(f"({_H16}:){{1,{head}}}(:{_H16}){{1,{7 - head}}}" for head in range(1, 7)),
        f":((:{_H16}){{1,7}}|:)",
    ]
)
_PROPERTIES = load_schema(ACCESS_EVENT_SCHEMA)["properties"]
ASN_TYPES = tuple(value for value in _PROPERTIES["asn_type"]["enum"] if value)
MAX_TAGS = _PROPERTIES["request_tags"]["maxItems"]
MAX_TAG_CHARS = _PROPERTIES["request_tags"]["items"]["maxLength"]


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
    # The schema's maxLength counts code points, as DuckDB's length() does (asn_type: an enum instead).
    if "maxLength" in _PROPERTIES[name]:
        bounded = f"length({_text(name)}) <= {_PROPERTIES[name]['maxLength']}"
        condition = f"{condition} and {bounded}" if condition else bounded
    present = f"({_is_string(name)} and {condition})" if condition else _is_string(name)
    if required:
        return f"({present} and doc.{name} <> '\"\"')"
    return f"(doc.{name} is null or {present})"


def _long(name: str) -> str:
    # A non-negative integer up to the schema's maximum (else one that fits a long). DuckDB writes a JSON
    # number with a fraction or exponent with a '.', so 12.0 and 1e2 are left to the contract check; a
    # string fails the cast on its quotes.
    maximum = _PROPERTIES[name].get("maximum", LONG_MAX)
    return f"(not contains(doc.{name}, '.') and try_cast(doc.{name}::varchar as ubigint) <= {maximum})"


def _count(name: str, required: bool = False) -> str:
    return _long(name) if required else f"(doc.{name} is null or {_long(name)})"


def _coordinate(name: str, bound: int) -> str:
    # A string fails the cast on its quotes; NaN and infinities (DuckDB's reader accepts them, Jackson
    # does not) fail the range check.
    return f"(doc.{name} is null or try_cast(doc.{name}::varchar as double) between -{bound} and {bound})"


def _number(name: str, sql_type: str) -> str:
    return f"try_cast(doc.{name} as {sql_type})"


def _quoted_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(sql_string_literal(value) for value in values) + "]"


_TAGS = "try_cast(doc.request_tags as varchar[])"
# A JSON array of non-empty strings, as DuckDB writes it back (compact).
_TAGS_PATTERN = r'\[("([^"\\]|\\.)+"(,"([^"\\]|\\.)+")*)?\]'

# field -> (typed value for any record the contract accepts, the parser's rule in the plain spelling).
# Typed values use try_cast so that no record can fail the query; broken records are filtered out.
FIELD_SQL: dict[str, tuple[str, str]] = {
    "event_id": (_text("event_id"), _string("event_id", required=True)),
    # Exactly RFC 3339 UTC with milliseconds: the text is what the parsed time formats back to.
    "event_time": (
        f"try_strptime({_text('event_time')}, '{EVENT_TIME_FORMAT}')",
        _string(
            "event_time",
            f"strftime(try_strptime({_text('event_time')}, '{EVENT_TIME_FORMAT}'), '{EVENT_TIME_FORMAT}')"
            f" = {_text('event_time')}",
            required=True,
        ),
    ),
    "account_id": (_text("account_id"), _string("account_id", required=True)),
    "api_key_id": (_text("api_key_id"), _string("api_key_id", required=True)),
    "org_id": (_text("org_id"), _string("org_id")),
    "source_ip": (
        _text("source_ip"),
        _string(
            "source_ip",
            f"(regexp_full_match({_text('source_ip')}, '{IPV4_PATTERN}')"
            f" or regexp_full_match({_text('source_ip')}, '{IPV6_PATTERN}'))",
            required=True,
        ),
    ),
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
        f"(doc.request_tags is null or (regexp_full_match(doc.request_tags, '{_TAGS_PATTERN}')"
        f" and len({_TAGS}) <= {MAX_TAGS}"
        f" and coalesce(list_max(list_transform({_TAGS}, lambda tag: length(tag))), 0) <= {MAX_TAG_CHARS}))",
    ),
}


def _canonical_text() -> str:
    """The record as DuckDB would write these fields back: compact, in the contract's order, nulls kept."""
    pieces = ", ',', ".join(
        f"'{json.dumps(name)}:', coalesce(doc.{name}, 'null')" for name in CONTRACT_FIELDS
    )
    return f"concat('{{', {pieces}, '}}')"


# Extras DuckDB writes exactly as the job's parser (Jackson) does: keys that need no escaping, values that
# are short integers, booleans, null or strings without escapes. Anything else goes to the contract check.
_PLAIN_EXTRA_KEY = "[A-Za-z0-9_-]+"
_PLAIN_EXTRA_VALUE = '-?[0-9]{1,18}|true|false|null|"[^"\\\\]*"'


def _parse_sql() -> str:
    """One slice of `records` (line_no, raw with its line end) -> typed contract fields, `plain`, extras,
    and the record's text where the contract check will need it."""
    structure = "{" + ", ".join(f'"{name}": "JSON"' for name in CONTRACT_FIELDS) + "}"
    typed = ",\n    ".join(f"{FIELD_SQL[name][0]} as {name}" for name in CONTRACT_FIELDS)
    rules = "\n      and ".join(FIELD_SQL[name][1] for name in CONTRACT_FIELDS)
    # Flink's line reader drops the \n and one \r before it; JSON does not mind either, so the text is
    # only cut where it is compared or kept.
    text = "case when ends_with(line, e'\\r\\n') then line[:-3] else line[:-2] end"
    canonical = f"line = concat({_canonical_text()}, e'\\n')"
    keys = "json_keys(line)"
    extra_keys = f"list_filter({keys}, lambda key: not list_contains({_quoted_list(CONTRACT_FIELDS)}, key))"
    extra_json = f"list_transform({extra_keys}, lambda key: json_extract(line, '$.\"' || key || '\"'))"
    return f"""
with objects as (
  -- json_valid first: the JSON functions raise on text that is not JSON
  select line_no, raw as line,
    case when not json_valid(raw) then false when starts_with(raw, '{{') then true
      else json_type(raw) = 'OBJECT' end as is_object
  from records
),
-- materialized: otherwise DuckDB repeats the parse in every expression that reads doc
documents as materialized (
  -- one parse per record into the contract's fields, each kept as JSON so its type can be checked
  select line_no, line, is_object,
    case when is_object then json_transform(line, {sql_string_literal(structure)}) end as doc
  from objects
),
checked as (
  select line_no, line, is_object,
    {typed},
    case when is_object and not {canonical} and len({extra_keys}) > 0 then concat('{{', array_to_string(
      list_transform(list_zip({extra_keys}, {extra_json}), lambda pair: '"' || pair[1] || '":' || pair[2]),
      ','), '}}') end as extras,
    -- plain is never null: a null would leave the record neither vouched for nor judged
    coalesce(case
      when not is_object then false
      -- A record that reads back exactly as DuckDB writes these fields has no duplicate key, no field
      -- outside the contract and no trailing comma: only the others need their keys listed.
      when {canonical} then true
      else len({keys}) = len(list_distinct({keys}))
        -- (list_bool_and of an empty list is null: no extras is plain)
        and coalesce(list_bool_and(list_transform({extra_keys},
          lambda key: regexp_full_match(key, '{_PLAIN_EXTRA_KEY}'))), true)
        and coalesce(list_bool_and(list_transform({extra_json}, lambda value:
          regexp_full_match(value, {sql_string_literal(_PLAIN_EXTRA_VALUE)}))), true)
        -- DuckDB's reader tolerates trailing commas, Jackson does not
        and not regexp_matches(line, ',[ \\t\\n\\r]*[\\]}}]')
        and strlen({text}) <= {MAX_RECORD_CHARS}
    end and {rules}, false) as plain
  from documents
)
select * exclude (line), case when not plain then {text} end as raw
from checked
"""


# --- the contract check, for the records DuckDB did not vouch for ----------------------------------------

CONTRACT_PROPERTIES = frozenset(load_schema(ACCESS_EVENT_SCHEMA)["properties"])
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_EVENT_TIME = re.compile(EVENT_TIME_PATTERN)
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


def _stopwatch(timings: dict[str, tuple[float, float]]):
    """stage(name) records (wall, CPU) seconds since the previous call under name."""
    last = time.perf_counter(), time.process_time()

    def stage(name: str) -> None:
        nonlocal last
        now = time.perf_counter(), time.process_time()
        timings[name] = (round(now[0] - last[0], 3), round(now[1] - last[1], 3))
        last = now

    return stage


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


def _judge_suspects(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    """(extras of valid suspects, dead letters): the contract check over records DuckDB did not vouch for."""
    suspects = con.execute(
        "select line_no, raw, is_object from parsed where not plain order by line_no"
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
select {fields}, coalesce(accepted.extras, parsed.extras) as extras,
  -- a file has no Kafka coordinates: null, as in the job's file replay
  cast(null as integer) as kafka_partition, cast(null as bigint) as kafka_offset,
  {_partition_of("parsed.event_time")}
from parsed left join accepted on parsed.line_no = accepted.line_no
-- valid: DuckDB vouched for it, or the contract check accepted it
where parsed.plain or accepted.line_no is not null
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


def _duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type whose Parquet encoding reads back as arrow_type."""
    if pa.types.is_list(arrow_type):
        return _duckdb_type(arrow_type.value_type) + "[]"
    if pa.types.is_timestamp(arrow_type):
        return {"s": "timestamp_s", "ms": "timestamp_ms", "us": "timestamp", "ns": "timestamp_ns"}[
            arrow_type.unit
        ]
    return {pa.string(): "varchar", pa.int64(): "bigint", pa.int32(): "integer", pa.float64(): "double"}[
        arrow_type
    ]


def _write(con: duckdb.DuckDBPyConnection, table: lake.LakeTable, query: str, staging: Path, tag: str) -> int:
    """Write the query's rows as `table`'s hive partitions under staging; returns the row count.

    Each column is cast to the type whose Parquet encoding reads back as LakeTable.arrow_schema().
    """
    columns = ", ".join(
        f"cast({field.name} as {_duckdb_type(field.type)}) as {field.name}" for field in table.arrow_schema()
    )
    target = sql_string_literal(str(staging / table.name))
    options = (
        f"format parquet, compression snappy, partition_by ({', '.join(lake.PARTITION_COLUMNS)}),"
        f" filename_pattern '{lake.PART_FILE_PREFIX}batch-{tag}-{{i}}', file_extension 'parquet'"
    )
    copied = con.execute(f"copy (select {columns}, dt, hr from ({query})) to {target} ({options})")
    ((rows,),) = copied.fetchall()
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
        con.execute("set enable_progress_bar = false")
        # Rows carry their line number; nothing needs DuckDB to keep them in order, which frees its threads.
        con.execute("set preserve_insertion_order = false")
        stage = _stopwatch(timings := {})
        con.register("records", RECORD_SCHEMA.empty_table())
        con.execute(f"create temp table parsed as {_parse_sql()}")
        # Slice by slice: memory holds one slice of raw text, not the file.
        for records in _record_slices(events_jsonl):
            # Many small Arrow batches: DuckDB scans them in parallel, one large batch on one thread.
            chunks = [
                records.slice(start, SCAN_BATCH_ROWS) for start in range(0, records.num_rows, SCAN_BATCH_ROWS)
            ]
            con.register("records", pa.Table.from_batches(chunks, schema=RECORD_SCHEMA))
            con.execute(f"insert into parsed {_parse_sql()}")
        stage("parse")
        accepted, dead_letters = _judge_suspects(con)
        con.register("accepted", accepted)
        con.register("dead_letter_records", dead_letters)
        stage("contract check")
        con.execute(f"create temp view valid_events as {_valid_events_sql()}")
        (records,) = con.execute("select count(*) from parsed").fetchall()[0]
        stage("valid events")
        rows = {lake.EVENTS.name: _write(con, lake.EVENTS, "select * from valid_events", staging, tag)}
        stage("write events")
        for table in WINDOWED_TABLES:
            rows[table.name] = _write(con, table, _window_sql(table), staging, tag)
        stage("aggregate and write windows")
        failed_at_sql = f"cast({sql_string_literal(failed_at.isoformat(sep=' '))} as timestamp)"
        rows[lake.DEAD_LETTERS.name] = _write(
            con,
            lake.DEAD_LETTERS,
            f"select reason, raw, event_time, {failed_at_sql} as failed_at, {_partition_of(failed_at_sql)}"
            " from dead_letter_records",
            staging,
            tag,
        )
        # Every record is archived or a dead letter; checked before anything reaches the lake.
        if rows[lake.EVENTS.name] + rows[lake.DEAD_LETTERS.name] != records:
            raise BatchLakeError(
                f"{events_jsonl}: {records} records but {rows[lake.EVENTS.name]} events and"
                f" {rows[lake.DEAD_LETTERS.name]} dead letters; nothing was written to {lake_dir}"
            )
        # Nothing is late in a batch; the table exists, empty, like the job's with no late arrivals.
        rows[lake.LATE_EVENTS.name] = 0
        lake.LATE_EVENTS.path(lake_dir).mkdir(parents=True, exist_ok=True)
        partitions = _publish(staging, lake_dir)
        stage("dead letters and publish")
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
        stage_seconds=timings,
    )
