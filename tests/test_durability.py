"""Issue 11, finding 1: no incident lost or doubled, whatever fails between detection and delivery.

Each test breaks one step — the audit append (a path that cannot be written, a disk that fills
mid-write, a torn last line), or the process itself (SIGKILLed in a subprocess right after one write
and before the next) — then lets the next run recover, and checks the three places an incident lives:
the state, the audit log and a JSONL sink. Every signal and every incident change must be in each
exactly once, and the chain must verify.
"""

from __future__ import annotations

import datetime as dt
import os
import signal as signals_module
import subprocess
import sys
from pathlib import Path

import pytest
from lakefixture import read_jsonl
from signalfixture import NOW, RING, Engine, assert_each_once, ring_signals
from signalfixture import signal as make_signal

from pipelines.commands import cli
from pipelines.incidents import audit, audit_state
from pipelines.incidents.alert_state import AlertStore, AuditCursor

TESTS_DIR = Path(__file__).parent
LATER = NOW + dt.timedelta(minutes=10)


def killed_at(folder: Path, step: str, action: str = "detect") -> None:
    """Run the engine (or an acknowledgement) in a subprocess that SIGKILLs itself when `step` (an
    AlertStore or sink method) is called: the write before it is done, the one it makes is not."""
    owner = "JsonlSink" if step == "send_and_die" else "AlertStore"
    script = f"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(TESTS_DIR)!r})
from signalfixture import NOW, Engine, ring_signals
from pipelines.incidents import audit
from pipelines.incidents import engine as incidents
from pipelines.incidents.alert_state import AlertStore
from pipelines.incidents.sinks import JsonlSink

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if {step!r} == "send_and_die":  # the sink took the notification; the outbox never hears of it
    send = JsonlSink.send
    JsonlSink.send = lambda self, delivery: (send(self, delivery), die())
else:
    setattr({owner}, {step!r}, die)
engine = Engine(Path({str(folder)!r}))
if {action!r} == "detect":
    engine.run(ring_signals())
else:
    with AlertStore.open(engine.folder / "state.duckdb") as store:
        (incident,) = store.list_incidents()
        incidents.change_status(store, engine.router, audit.open_audit_log(engine.config),
                                incident["incident_id"], "acknowledged", "alice", "mine", NOW)
"""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR.parent), str(TESTS_DIR)])}
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == -signals_module.SIGKILL, result.stderr


def assert_ring_once(engine: Engine, changes: list[str]) -> None:
    """The ring's one incident, with all its accounts; its signals and `changes` each once everywhere."""
    with engine.store() as store:
        (incident,) = store.list_incidents()
    assert incident["account_count"] == len(RING)
    assert_each_once(
        engine,
        (s["alert_id"] for s in ring_signals()),
        [(incident["incident_id"], change) for change in changes],
    )


@pytest.mark.parametrize(
    "step",
    [
        "record_run",  # the run's one audit batch appended, its one state transaction not begun
        "mark_delivered",  # outbox written, delivery attempted: killed before the sink is marked
        "send_and_die",  # the sink wrote the notification; killed before the outbox is marked
    ],
)
def test_a_run_killed_at_any_step_is_recovered_once_by_the_next(tmp_path, step):
    killed_at(tmp_path, step)

    Engine(tmp_path).run(ring_signals(), LATER)  # the next scheduled run finds the same signals

    assert_ring_once(Engine(tmp_path), ["opened"])


TABLES = (
    "signals",
    "suppressions",
    "detection_risk",
    "incidents",
    "incident_members",
    "outbox",
    "audit_cursor",
)


def state_rows(folder: Path) -> dict[str, list[tuple]]:
    """Every row of every table the engine writes, in a stable order."""
    with AlertStore.open(folder / "state.duckdb") as store:
        return {table: store.con.sql(f"select * from {table} order by all").fetchall() for table in TABLES}


def unlinked(routed: list[dict]) -> list[dict]:
    """Routed documents without their page link (a file:// URL under each folder)."""
    return [{key: value for key, value in document.items() if key != "incident_page"} for document in routed]


def test_a_run_killed_between_its_audit_batch_and_its_transaction_ends_as_a_clean_run(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir(), killed.mkdir()
    Engine(clean).run(ring_signals())
    killed_at(killed, "record_run")  # every signal and incident change audited, none in the state
    with AlertStore.open(killed / "state.duckdb") as store:
        assert store.list_alerts() == [] and store.list_incidents() == [] and store.pending_deliveries() == 0
    assert Engine(killed).routed() == []

    Engine(killed).run(ring_signals())  # the next run, at the same clock: reconcile, then nothing new

    # The same audit log byte for byte (no record added or doubled by the recovery), the same state row
    # for row (signals, incidents, members, outbox, cursor), and the same one page.
    assert (killed / "audit.jsonl").read_bytes() == (clean / "audit.jsonl").read_bytes()
    assert state_rows(killed) == state_rows(clean)
    pages = {folder: unlinked(Engine(folder).routed()) for folder in (clean, killed)}
    assert pages[killed] == pages[clean] and [page["change"] for page in pages[killed]] == ["opened"]
    assert_ring_once(Engine(killed), ["opened"])


@pytest.mark.parametrize(
    ("appended", "applied"),
    [
        ("signals", "nothing"),  # killed after the signal batch, before its transaction
        ("signals", "signals"),  # killed after the signals' transaction, before the incident batch
        ("everything", "signals"),  # killed after the incident batch, before its transaction
    ],
)
def test_what_a_two_batch_run_of_the_previous_version_left_pending_ends_as_a_clean_run(
    tmp_path, appended, applied
):
    """Before one pass, a run appended its signals and its incident changes as two batches, each applied
    in its own transaction. The records are the same and a batch leaves no mark in the log, so whatever
    such a run left pending, this version's next run reconciles it to the state of a clean run."""
    clean, old = tmp_path / "clean", tmp_path / "old"
    clean.mkdir(), old.mkdir()
    Engine(clean).run(ring_signals())
    lines = (clean / "audit.jsonl").read_bytes().splitlines(keepends=True)
    signal_count = len(ring_signals())
    Engine(old)  # its configuration
    with AlertStore.open(old / "state.duckdb") as store:
        # the interrupted run's reconcile found an empty log and set the cursor at its start
        store.set_audit_cursor(AuditCursor(-1, audit.GENESIS_HASH, 0))
        written = lines if appended == "everything" else lines[:signal_count]
        (old / "audit.jsonl").write_bytes(b"".join(written))
        if applied == "signals":
            signal_items = audit.AuditLog(old / "audit.jsonl").records_after(0)[:signal_count]
            audit_state.apply_run(store, signal_items, NOW)

    Engine(old).run(ring_signals())

    assert (old / "audit.jsonl").read_bytes() == (clean / "audit.jsonl").read_bytes()
    assert state_rows(old) == state_rows(clean)
    assert unlinked(Engine(old).routed()) == unlinked(Engine(clean).routed())
    assert_ring_once(Engine(old), ["opened"])


def test_an_acknowledgement_killed_before_the_state_holds_it_is_applied_once(tmp_path, capsys):
    engine = Engine(tmp_path)
    engine.run(ring_signals())
    killed_at(tmp_path, "transition_incident", action="ack")

    # on-call tries again: the acknowledgement already stands (applied from its audit record)
    with engine.store() as store:
        (incident,) = store.list_incidents()
    common = ["--config", str(engine.config.path)]
    assert cli.main(["incidents", "ack", incident["incident_id"], "--by", "bob", *common]) == 1
    assert "is acknowledged; cannot mark it acknowledged" in capsys.readouterr().err
    engine.run([], LATER)  # the next run delivers the follow-up

    assert_ring_once(engine, ["opened", "acknowledged"])
    with engine.store() as store:
        (incident,) = store.list_incidents()
    assert incident["ack_by"] == "alice" and incident["incident"]["acknowledged"]["note"] == "mine"


def test_an_audit_log_that_cannot_be_written_records_nothing_and_the_next_run_raises_it(tmp_path):
    engine = Engine(tmp_path)
    (tmp_path / "audit.jsonl").mkdir()  # not writable as a file: every append fails

    with pytest.raises(Exception, match="nothing was recorded"):
        engine.run(ring_signals())
    with engine.store() as store:
        assert store.list_alerts() == [] and store.list_incidents() == []
    assert engine.routed() == []

    (tmp_path / "audit.jsonl").rmdir()
    engine.run(ring_signals(), LATER)
    assert_ring_once(engine, ["opened"])


def test_a_disk_that_fills_during_the_audit_append_loses_and_doubles_nothing(tmp_path, monkeypatch):
    engine = Engine(tmp_path)
    real_fsync = os.fsync

    def disk_full(descriptor):  # the run's one batch (signals and the incident's records) hits a full disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit.os, "fsync", disk_full)
    with pytest.raises(Exception, match="No space left"):
        engine.run(ring_signals())
    monkeypatch.setattr(audit.os, "fsync", real_fsync)
    assert (tmp_path / "audit.jsonl").read_bytes() == b""  # cut off whole: nothing half-recorded
    with engine.store() as store:
        assert store.list_alerts() == [] and store.list_incidents() == []

    engine.run(ring_signals(), LATER)
    assert_ring_once(engine, ["opened"])


def test_a_torn_last_line_does_not_block_the_next_change(tmp_path, capsys):
    engine = Engine(tmp_path)
    engine.run(ring_signals())
    with (tmp_path / "audit.jsonl").open("a") as log:
        log.write('{"seq": 99, "kind": "sig')  # a write cut short by a crash

    newcomer = make_signal("shared_hosting_infrastructure", "203.0.113.7", RING[:3] + ["late-1"], 6, 40)
    (update,) = engine.run([newcomer], LATER).changes

    assert update["change"] == "updated" and "late-1" in update["account_ids"]
    assert "removed a torn last line" in capsys.readouterr().err
    records = read_jsonl(tmp_path / "audit.jsonl")
    assert [r["payload"]["change"] for r in records if r["kind"] == "incident"] == ["opened", "updated"]
    assert [r["change"] for r in engine.routed()] == ["opened", "updated"]
    assert audit.verify(tmp_path / "audit.jsonl")[0]
