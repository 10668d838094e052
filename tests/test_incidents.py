"""The incident engine without a JVM or a lake: signals in, incidents out, through a real state database,
audit log and JSONL sink."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from lakefixture import read_jsonl
from signalfixture import NOW, POLICIES, RING, Engine, ring_signals, signal

from pipelines.commands import cli
from pipelines.incidents import audit
from pipelines.incidents import engine as incidents
from pipelines.incidents.alert_state import AlertStore
from pipelines.incidents.audit import AuditLog
from pipelines.infra.config import ConfigError


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


def test_a_ring_from_five_detections_over_six_hours_is_one_incident_naming_every_account(engine):
    run = engine.run(ring_signals())

    (incident,) = run.changes
    assert incident["change"] == "opened" and [page["incident_id"] for page in run.pages] == [
        incident["incident_id"]
    ]
    assert incident["account_ids"] == sorted(RING)
    assert incident["dedup_key"] == incident["incident_id"]
    assert set(incident["detection_ids"]) == set(POLICIES) - {"impossible_travel", "restricted_region_access"}
    assert {"type": "ip", "id": "203.0.113.7"} in incident["entities"]
    assert {"type": "template", "id": "tmpl-77"} in incident["entities"]
    # the union of its signals' techniques, each id once (AML.T0024.002 comes from two detections)
    assert incident["techniques"] == {
        "attack": ["T1090", "T1119", "T1585"],
        "atlas": ["AML.T0008.005", "AML.T0021", "AML.T0024.002"],
    }
    contributions = {c["detection_id"]: c["contribution"] for c in incident["evidence"]["contributions"]}
    # The hosting IP's six hourly signals are one finding (one dedup_key): they count once.
    assert contributions["shared_hosting_infrastructure"] == 40
    assert contributions["extraction_profile"] == 80  # 50 + 0.25 * 9 * 50 = 162.5, capped at 80
    assert incident["risk_score"] == sum(contributions.values()) == 60 + 40 + 50 + 30 + 80
    assert incident["severity"] == "critical"
    assert incident["signal_count"] == len(ring_signals())
    assert "40 accounts" in incident["summary"] and "203.0.113.7" in incident["summary"]
    (routed,) = engine.routed()
    assert routed.pop("incident_page").endswith(f"incident-{incident['incident_id']}.html")  # its link
    assert routed == incident


def test_the_ring_growing_later_updates_the_same_incident_without_a_page(engine):
    first = engine.run(ring_signals())
    newcomers = [f"late-{index}" for index in range(5)]

    grown = engine.run(
        [signal("shared_hosting_infrastructure", "203.0.113.7", RING[:3] + newcomers, 6, 40)],
        NOW + dt.timedelta(hours=1),
    )

    (update,) = grown.changes
    assert update["incident_id"] == first.changes[0]["incident_id"]
    assert update["change"] == "updated" and grown.pages == []
    assert update["growth"]["accounts"] == 5 and len(update["account_ids"]) == 45
    assert [routed["change"] for routed in engine.routed()] == ["opened", "updated"]


def test_a_risk_rise_past_a_tier_escalates_and_pages_once_more(engine):
    weak = [signal("shared_hosting_infrastructure", "198.51.100.9", ["a", "b", "c"], 0, 40)]
    weak.append(signal("shared_payment_fingerprint", "card-1", ["a", "b"], 0, 60))  # 40 + 60 = 100: medium
    first = engine.run(weak)
    assert [(c["change"], c["severity"]) for c in first.changes] == [("opened", "medium")]

    stronger = engine.run([signal("ring_clustering", "ring:a", ["a", "b", "c"], 1, 60)])

    (change,) = stronger.changes
    assert (change["change"], change["severity"], change["previous_severity"]) == (
        "escalated",
        "high",
        "medium",
    )
    assert change["incident_id"] == first.changes[0]["incident_id"] and len(stronger.pages) == 1


def test_a_lone_weak_signal_opens_nothing(engine):
    run = engine.run([signal("impossible_travel", "solo", ["solo"], 0, 30)])

    assert run.changes == [] and engine.routed() == []
    assert len(run.recorded.new) == 1  # recorded as a signal all the same


def test_an_immediate_signal_opens_an_incident_at_once(engine):
    served = signal("restricted_region_access", "acct-ir", ["acct-ir"], 0, 70, "critical", immediate=True)

    (incident,) = engine.run([served]).changes

    assert incident["change"] == "opened" and incident["severity"] == "critical"
    assert incident["risk_score"] == 70 and incident["account_ids"] == ["acct-ir"]


def test_two_unrelated_accounts_are_two_incidents(engine):
    signals = []
    for account in ("alpha", "bravo"):
        signals += [signal("extraction_profile", account, [account], 0, 60)]
        signals += [signal("impossible_travel", account, [account], 1, 45)]

    run = engine.run(signals)

    assert sorted(tuple(c["account_ids"]) for c in run.changes) == [("alpha",), ("bravo",)]
    assert {c["risk_score"] for c in run.changes} == {105}
    assert len({c["incident_id"] for c in run.changes}) == 2


def test_accounts_of_one_org_with_strong_signals_are_one_incident(engine):
    """Three accounts of one org with immediate signals: one case for on-call; an account of another
    org, and org members with other signals, stay out of it (an org's weak signals do not add up)."""
    signals = [signal("restricted_region_access", a, [a], 0, 90, immediate=True) for a in ("r1", "r2", "r3")]
    signals += [signal("restricted_region_access", "x1", ["x1"], 0, 90, immediate=True)]
    signals += [signal("impossible_travel", "weak", ["weak"], 0, 10)]
    signals += [signal("extraction_profile", m, [m], 0, 60) for m in ("lab1", "lab2")]
    orgs = {"r1": "org-a", "r2": "org-a", "r3": "org-a", "x1": "org-b", "weak": "org-a"}
    orgs |= {"lab1": "org-c", "lab2": "org-c"}

    run = engine.run(signals, links={account: {f"org:{org}"} for account, org in orgs.items()})

    assert sorted(tuple(change["account_ids"]) for change in run.pages) == [("r1", "r2", "r3"), ("x1",)]


def test_suspicious_accounts_behind_one_anonymizing_exit_are_one_incident(engine):
    """Two restricted-region users with no org in common, evading through the same VPN exit: one case.
    Accounts on that exit with other signals, weak or strong, are not tied in."""
    signals = [signal("restricted_region_access", a, [a], 0, 90, immediate=True) for a in ("v1", "v2")]
    signals += [signal("impossible_travel", "bystander", ["bystander"], 0, 10)]
    signals += [signal("extraction_profile", "vpn-user", ["vpn-user"], 0, 60)]
    exit_node = {"exit:193.36.126.244"}
    links = {account: exit_node for account in ("v1", "v2", "bystander", "vpn-user")}

    run = engine.run(signals, links=links)

    assert [change["account_ids"] for change in run.pages] == [["v1", "v2"]]


def test_a_linking_signal_merges_two_incidents_into_the_oldest(engine, monkeypatch):
    first = engine.run(
        [
            signal("extraction_profile", "alpha", ["alpha"], 0, 60),
            signal("impossible_travel", "alpha", ["alpha"], 0, 45),
        ]
    )
    second = engine.run(
        [
            signal("extraction_profile", "bravo", ["bravo"], 1, 60),
            signal("impossible_travel", "bravo", ["bravo"], 1, 45),
        ],
        NOW + dt.timedelta(minutes=5),
    )
    older, newer = first.changes[0]["incident_id"], second.changes[0]["incident_id"]
    batches, transactions = [], []
    append_batch, transaction = AuditLog.append_batch, AlertStore._transaction

    def spied_append(log, entries, now=None):
        batches.append([(kind, payload.get("change")) for kind, payload in entries])
        return append_batch(log, entries, now)

    def spied_transaction(store, work, tables=None):
        transactions.append(sorted(tables or {}))
        return transaction(store, work, tables)

    monkeypatch.setattr(AuditLog, "append_batch", spied_append)
    monkeypatch.setattr(AlertStore, "_transaction", spied_transaction)

    merged = engine.run(
        [signal("shared_payment_fingerprint", "card-9", ["alpha", "bravo"], 2, 50)],
        NOW + dt.timedelta(minutes=10),
    )

    # One pass: the signal, the oldest escalated, the merge and the merged incident resolved are one
    # audit append and one state transaction (delivery's marks come after, outside it).
    (batch,) = batches
    changes = [("incident", change) for change in ("escalated", "merged", "resolved")]
    assert batch == [("signal", None), *changes]
    assert len(transactions) == 1 and {"fresh", "changed", "outbox_rows"} <= set(transactions[0])

    by_id = {change["incident_id"]: change for change in merged.changes}
    assert by_id[older]["account_ids"] == ["alpha", "bravo"]
    # 75 (two extraction signals) + 50 (travel, capped) + 50 (payment): past the high tier
    assert (by_id[older]["change"], by_id[older]["risk_score"]) == ("escalated", 175)
    assert by_id[newer]["change"] == "resolved" and by_id[newer]["merged_into"] == older
    records = read_jsonl(engine.folder / "audit.jsonl")
    assert {"change": "merged", "incident_id": newer, "merged_into": older} in [r["payload"] for r in records]
    with engine.store() as store:
        assert {r["incident_id"] for r in store.list_incidents(status="open")} == {older}
        assert {s["incident_id"] for s in store.list_alerts()} == {older}


def test_rerunning_over_the_same_signals_changes_nothing(engine):
    engine.run(ring_signals())

    again = engine.run(ring_signals(), NOW + dt.timedelta(minutes=5))

    assert again.changes == [] and len(again.recorded.seen_again) == len(ring_signals())
    assert len(engine.routed()) == 1


def test_a_replay_into_a_fresh_state_gives_the_same_incident_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    live = Engine(tmp_path / "a").run(ring_signals())
    replay = Engine(tmp_path / "b").run(list(reversed(ring_signals())), NOW + dt.timedelta(days=3))

    assert [c["incident_id"] for c in live.changes] == [c["incident_id"] for c in replay.changes]


def test_ack_and_resolve_act_on_the_incident_and_every_signal_in_it(engine):
    (opened,) = engine.run(ring_signals()).changes
    incident_id = opened["incident_id"]

    with engine.store() as store:
        acked = incidents.change_status(
            store,
            engine.router,
            audit.open_audit_log(engine.config),
            incident_id[:8],
            "acknowledged",
            "alice",
            "on it",
            NOW,
        )
        engine.router.deliver(store, NOW)
        assert {s["status"] for s in store.list_alerts()} == {"acknowledged"}
        assert {s["ack_by"] for s in store.list_alerts()} == {"alice"}
        incidents.change_status(
            store,
            engine.router,
            audit.open_audit_log(engine.config),
            incident_id,
            "resolved",
            "alice",
            None,
            NOW,
        )
        engine.router.deliver(store, NOW)
        assert {s["status"] for s in store.list_alerts()} == {"resolved"}
        assert store.get_incident(incident_id)["status"] == "resolved"
    assert acked["acknowledged"]["by"] == "alice"
    assert [r["change"] for r in engine.routed()] == ["opened", "acknowledged", "resolved"]
    kinds = [(r["kind"], r["payload"].get("change")) for r in read_jsonl(engine.folder / "audit.jsonl")]
    assert kinds[-3:] == [("incident", "opened"), ("incident", "acknowledged"), ("incident", "resolved")]
    assert audit.verify(engine.folder / "audit.jsonl")[0]

    # Old signals do not reopen it; new ones after the resolution open a new incident.
    assert engine.run(ring_signals(), NOW + dt.timedelta(hours=1)).changes == []
    later = [
        signal("ring_clustering", "ring:ring-00", RING, 9, 60),
        signal("shared_hosting_infrastructure", "203.0.113.7", RING[:15], 9, 40),
    ]
    (reopened,) = engine.run(later, NOW + dt.timedelta(hours=4)).changes
    assert reopened["change"] == "opened" and reopened["incident_id"] != incident_id


def test_audit_records_precede_the_state_they_describe(engine, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("crash between audit and state")

    monkeypatch.setattr(AlertStore, "record_run", fail)
    with pytest.raises(RuntimeError):
        engine.run(ring_signals())

    records = read_jsonl(engine.folder / "audit.jsonl")
    # the audit log knows what the state never got to record: the signals and the incident, one batch
    assert [r["payload"].get("change") for r in records].count("opened") == 1
    assert sum(r["kind"] == "signal" for r in records) == len(ring_signals())
    with engine.store() as store:
        assert store.list_alerts() == [] and store.list_incidents() == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("incidents: {window: soon}\n", "incidents.window"),
        ("incidents: {link_min_risk: 120}\n", "link_min_risk must be a whole number from 0 to 100"),
        ("incidents: {severity_tiers: {medium: 200, high: 150}}\n", "must rise with severity"),
        ("incidents: {threshold: 3}\n", "unknown key"),
    ],
)
def test_bad_incident_settings_name_the_file_and_line(tmp_path, section, message):
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:5: .*{message}"):
        Engine(tmp_path, incident_settings=section)


def test_incidents_list_and_show_commands(engine, capsys):
    (opened,) = engine.run(ring_signals()).changes
    common = ["--config", str(engine.config.path)]

    assert cli.main(["incidents", "list", "--severity", "high", *common]) == 0
    listed = capsys.readouterr().out
    assert opened["incident_id"][:12] in listed and "(1 row)" in listed

    assert cli.main(["incidents", "show", opened["incident_id"][:8], *common]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"[CRITICAL] {opened['title']}") and opened["summary"] in shown
    assert "delivery: opened -> file: delivered" in shown

    assert cli.main(["incidents", "show", "--json", opened["incident_id"], *common]) == 0
    assert json.loads(capsys.readouterr().out) == {k: v for k, v in opened.items() if k != "change"}

    assert cli.main(["incidents", "show", "ffffffff", *common]) == 1
    assert "no incident 'ffffffff'" in capsys.readouterr().err


def test_a_multi_account_incident_is_titled_as_a_campaign(engine):
    (ring,) = engine.run(ring_signals()).changes
    assert ring["title"].startswith(f"Campaign of {len(RING)} linked accounts, ")
    assert "; strongest: " in ring["title"]


def test_page_lines_escape_hostile_text_from_event_data(engine):
    hostile = "events/dt=2026-03-01/hr=10\x1b]0;pwned\x07\u202e"
    # an incident with no account is titled by its entity, which comes from the data
    served = {**signal("restricted_region_access", hostile, [], 0, 70, "high", immediate=True),
              "entity_type": "region"}  # fmt: skip

    (incident,) = engine.run([served]).changes

    line = incidents.page_line(incident)
    assert hostile in incident["title"]  # the document keeps the data as it is...
    assert "\x1b" not in line and "\u202e" not in line  # ...the terminal line escapes it
    assert r"hr=10\x1b]0;pwned\x07\u202e" in line
