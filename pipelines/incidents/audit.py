"""Append-only, hash-chained audit log (JSONL): every signal, incident change, acknowledgement and report.

Each line is one record {seq, ts, kind, payload, prev_hash, hash}; `hash` is the SHA-256 of the
canonical JSON of the record without `hash`, and `prev_hash` is the previous record's hash (the first
record chains to GENESIS_HASH). Editing, deleting or reordering any record breaks the chain at that
record, which `usagewatch audit verify` names. Cutting records off the *end* leaves a valid shorter
chain; that is caught by comparing with a head hash recorded elsewhere (reports carry head_hash()),
via `verify(path, expected_head=...)` / `audit verify --expect-head HASH`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.infra.config import Config, load_config
from pipelines.stream.contracts import format_event_time

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Beside the state database in use, unless state.audit_log names a file: the log moves with --state.
AUDIT_LOG_NAME = "audit.jsonl"


def canonical_json(value: Any) -> str:
    """One byte-exact rendering per value, so a hash can be recomputed by anyone."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: dict[str, Any]) -> str:
    unhashed = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(unhashed).encode("utf-8")).hexdigest()


def audit_log_path(config: Config, state_path: str | Path | None = None) -> Path:
    """state.audit_log if the configuration names it, else audit.jsonl beside the state database.

    `state_path` is the command's --state: a command pointed at another state database keeps its
    audit records beside that database, never in the configured (checkout's) log.
    """
    # alert_state imports this module, so its helpers are imported here, at call time.
    from pipelines.incidents.alert_state import state_path as chosen_state_path
    from pipelines.incidents.alert_state import state_section

    value = state_section(config).get("audit_log")
    if value is None:
        return chosen_state_path(config, state_path).parent / AUDIT_LOG_NAME
    if not isinstance(value, str) or not value:
        raise config.error("state", "state.audit_log must be a file path", "audit_log")
    return config.resolve(value)


def last_line(handle) -> bytes:
    """The file's last non-empty line, read backwards in blocks (the log only grows)."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    tail = b""
    position = end
    while position > 0:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
        stripped = tail.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return tail.rstrip(b"\n")


def _repair_torn_tail(handle) -> None:
    """Cut a last line without its newline (a write interrupted by a crash), or complete it if it is a
    whole record that only lost its newline."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return
    handle.seek(end - 1)
    if handle.read(1) == b"\n":
        return
    line = last_line(handle)
    try:
        record = json.loads(line)
        whole = isinstance(record, dict) and record.get("hash") == record_hash(record)
    except ValueError:
        whole = False
    if whole:
        handle.write(b"\n")
        return
    handle.truncate(end - len(line))
    logger.warning(
        f"audit: {handle.name}: removed a torn last line ({len(line)} bytes) left by an interrupted append"
    )


@dataclass(frozen=True)
class AuditBatch:
    records: list[dict[str, Any]]
    end_offset: int | None  # byte offset just after the batch; None for an empty batch


class AuditLog:
    """One audit log file. Appends from several processes serialize on an exclusive file lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _head(handle) -> tuple[int, str]:
        """(seq of the next record, hash of the last record)."""
        line = last_line(handle)
        if not line:
            return 0, GENESIS_HASH
        try:
            last = json.loads(line)
            return int(last["seq"]) + 1, str(last["hash"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{handle.name}: last record is unreadable ({error}); run `usagewatch audit verify`"
            ) from error

    def append(self, kind: str, payload: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
        """Append one record and return it (with its seq and hash)."""
        return self.append_many([(kind, payload)], now)[0]

    def append_many(
        self, entries: list[tuple[str, dict[str, Any]]], now: dt.datetime | None = None
    ) -> list[dict[str, Any]]:
        """Append (kind, payload) records under one lock and one fsync; return them with seq and hash."""
        return self.append_batch(entries, now).records

    def append_batch(
        self, entries: list[tuple[str, dict[str, Any]]], now: dt.datetime | None = None
    ) -> AuditBatch:
        """append_many, also returning where the batch ends in the file (the state's audit cursor).

        All or nothing: a write that fails part-way (disk full) is cut off again before the error is
        raised, so the log never keeps half a batch; a torn last line left by a process killed
        mid-write is removed first (it was never acknowledged, so nothing acted on it).
        """
        if any(not kind for kind, _ in entries):
            raise ValueError("audit record kind must be non-empty")
        if not entries:
            return AuditBatch([], None)
        ts = format_event_time(now or dt.datetime.now(dt.UTC))
        with self._locked() as handle:
            _repair_torn_tail(handle)
            seq, prev_hash = self._head(handle)
            records, lines = [], []
            for kind, payload in entries:
                record = {"seq": seq, "ts": ts, "kind": kind, "payload": payload, "prev_hash": prev_hash}
                record["hash"] = record_hash(record)
                records.append(record)
                lines.append(canonical_json(record) + "\n")
                seq, prev_hash = seq + 1, record["hash"]
            start = handle.seek(0, os.SEEK_END)
            try:
                handle.write("".join(lines).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(start)
                raise
            return AuditBatch(records, handle.tell())

    def records_after(self, offset: int) -> list[tuple[dict[str, Any], int]]:
        """(record, offset just after it) for every complete record from byte `offset` on."""
        if not self.path.exists():
            return []
        with self._locked() as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < offset:
                raise ValueError(
                    f"{self.path}: the log is shorter ({size} bytes) than the state has applied ({offset}): "
                    "records were cut off or the log was replaced; run `usagewatch audit verify`"
                )
            handle.seek(offset)
            result = []
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # a torn tail: never acknowledged, removed by the next append
                offset += len(line)
                result.append((json.loads(line), offset))
            return result

    def tail(self) -> tuple[int, str, int]:
        """(seq, hash, byte offset just after) of the newest record; (-1, GENESIS_HASH, 0) when empty."""
        if not self.path.exists():
            return -1, GENESIS_HASH, 0
        with self._locked() as handle:
            _repair_torn_tail(handle)
            seq, last_hash = self._head(handle)
            return seq - 1, last_hash, handle.seek(0, os.SEEK_END)

    def head_hash(self) -> str:
        """Hash of the newest record (GENESIS_HASH for an empty or missing log)."""
        if not self.path.exists():
            return GENESIS_HASH
        with self._locked() as handle:
            return self._head(handle)[1]


def verify(path: str | Path, expected_head: str | None = None) -> tuple[bool, int | None, str]:
    """Check the whole chain: (ok, index of the first bad record or None, message)."""
    path = Path(path)
    if not path.exists():
        return False, None, f"{path}: audit log does not exist"
    prev_hash = GENESIS_HASH
    count = 0
    with path.open("rb") as handle:
        for index, raw in enumerate(handle):
            count = index + 1
            where = f"{path}: record {index} (line {index + 1})"
            try:
                record = json.loads(raw)
            except ValueError as error:
                return False, index, f"{where} is not valid JSON: {error}"
            if not isinstance(record, dict) or set(record) != {
                "seq",
                "ts",
                "kind",
                "payload",
                "prev_hash",
                "hash",
            }:
                return False, index, f"{where} does not have exactly seq, ts, kind, payload, prev_hash, hash"
            if record["hash"] != record_hash(record):
                return False, index, f"{where} was modified: its content does not match its hash"
            if record["seq"] != index:
                return False, index, f"{where} has seq {record['seq']}: records were deleted or reordered"
            if record["prev_hash"] != prev_hash:
                return False, index, f"{where} does not chain to the record before it (deleted or reordered)"
            prev_hash = record["hash"]
    if expected_head is not None and prev_hash != expected_head:
        return (
            False,
            count,
            (
                f"{path}: head is {prev_hash} after {count} record(s), expected {expected_head}: "
                "records were cut off the end or the log was replaced"
            ),
        )
    return True, None, f"{path}: {count} record(s), chain intact, head {prev_hash}"


def open_audit_log(config: Config | None = None, state_path: str | Path | None = None) -> AuditLog:
    """The audit log of the state database in use (see audit_log_path)."""
    return AuditLog(audit_log_path(config or load_config(), state_path))


def append(kind: str, payload: dict[str, Any], config: Config | None = None) -> dict[str, Any]:
    """Append to the configured audit log: `append("report", {...})` from any component."""
    return open_audit_log(config).append(kind, payload)


def head_hash(config: Config | None = None) -> str:
    """Head hash of the configured audit log, to be quoted in reports."""
    return open_audit_log(config).head_hash()
