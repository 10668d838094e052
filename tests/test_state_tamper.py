"""Issue 11, finding 6: edits to the state database are caught by `usagewatch audit verify`.

`audit verify` checks the chain and then the state against it: every signal, incident and status change
in the state has its audit record and the other way round; it names the first difference.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest
from signalfixture import NOW, Engine, ring_signals
from signalfixture import signal as make_signal

from pipelines.commands import cli
from pipelines.incidents import audit
from pipelines.incidents import engine as incidents

LATER = NOW + dt.timedelta(minutes=10)


@pytest.fixture
def engine(tmp_path) -> Engine:
    engine = Engine(tmp_path)
    (incident,) = engine.run(ring_signals()).changes
    with engine.store() as store:
        incidents.change_status(
            store,
            engine.router,
            audit.open_audit_log(engine.config),
            incident["incident_id"],
            "acknowledged",
            "alice",
            None,
            NOW,
        )
    engine.run(two_lone_accounts(), LATER)  # a second, unrelated incident
    return engine


def two_lone_accounts() -> list[dict]:
    return [make_signal("restricted_region_access", "acct-ir", ["acct-ir"], 2, 90, immediate=True)]


def verify(engine: Engine, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(["audit", "verify", "--config", str(engine.config.path), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tamper(engine: Engine, *statements: str) -> None:
    """What an insider does with the duckdb CLI: edit the state file directly."""
    con = duckdb.connect(str(engine.folder / "state.duckdb"))
    for statement in statements:
        con.execute(statement)
    con.close()


def test_an_untouched_state_agrees_with_its_log(engine, capsys):
    code, output = verify(engine, capsys)
    assert code == 0, output
    assert "chain intact" in output and "state agrees" in output


def test_incidents_resolved_directly_in_the_state_are_caught(tmp_path, capsys):
    accounts = [f"acct-{index:04d}" for index in range(1030)]
    engine = Engine(tmp_path)
    signals = [make_signal("restricted_region_access", a, [a], 0, 90, immediate=True) for a in accounts]
    assert len(engine.run(signals).changes) == 1030
    assert verify(engine, capsys)[0] == 0

    tamper(
        engine,
        "update incidents set status = 'resolved', resolved_by = 'mallory'",
        "update signals set status = 'resolved', resolved_by = 'mallory'",
    )

    code, output = verify(engine, capsys)
    assert code == 1
    assert "incident " in output and "is resolved in the state" in output
    assert "2060 difference(s)" in output  # every incident and every signal in it


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("delete from signals where detection_id = 'ring_clustering'", "missing from the state"),
        ("delete from incidents where status = 'open'", "missing from the state"),
        ("update incidents set status = 'open' where status = 'acknowledged'", "is open in the state"),
        ("update signals set status = 'resolved' where detection_id = 'impossible_travel'", "resolved"),
        (
            "insert into signals select * replace ('forged-' || alert_id as alert_id) from signals limit 1",
            "without an audit record",
        ),
        ("update signals set incident_id = null where detection_id = 'ring_clustering'", "linked"),
    ],
)
def test_each_kind_of_edit_is_named(engine, capsys, statement, named):
    if "impossible_travel" in statement:  # a signal of no incident, marked resolved by hand
        engine.run([make_signal("impossible_travel", "lone", ["lone"], 3, 20)], LATER)
        assert verify(engine, capsys)[0] == 0
    tamper(engine, statement)

    code, output = verify(engine, capsys)

    assert code == 1 and named in output, output


def test_deleted_signals_raised_again_are_still_caught(engine, capsys):
    tamper(
        engine,
        "delete from signals where detection_id <> 'restricted_region_access'",
        "delete from suppressions",
    )
    engine.run(ring_signals(), LATER + dt.timedelta(minutes=5))  # they come back as "new"...

    code, output = verify(engine, capsys)

    assert code == 1 and "audited twice" in output  # ...and the log holding them twice does not verify


def test_a_log_cut_short_is_caught_by_the_state_even_without_the_head(engine, capsys):
    log = engine.folder / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-2]))

    code, output = verify(engine, capsys)
    assert code == 1 and "cut off" in output
    head = json.loads(lines[-1])["hash"]
    assert verify(engine, capsys, "--expect-head", head)[0] == 1


def test_records_a_killed_run_left_are_pending_not_a_difference(engine, capsys):
    newcomer = make_signal("extraction_profile", "acct-new", ["acct-new"], 5, 30)
    audit.open_audit_log(engine.config).append("signal", {"alert": newcomer, "suppressed_by": None}, LATER)

    code, output = verify(engine, capsys)

    assert code == 0 and "1 record(s) pending" in output
