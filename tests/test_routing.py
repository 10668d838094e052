"""Routing against a real local HTTP server: payload shapes, retries, the outbox, ack/resolve, secrets."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lakefixture import read_jsonl, write_events

from pipelines import cli
from pipelines.alert_state import AlertStore, Delivery
from pipelines.config import ConfigError, load_config
from pipelines.contracts import validate_alert
from pipelines.detections import detect_and_route
from pipelines.routing import PagerDutySink, RoutingError, load_router

FIXTURES_DIR = Path(__file__).parent / "detections" / "fixtures"
NOW = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
FAST_RETRY = (
    "  retry: {attempts: 2, backoff_seconds: 0.01, max_backoff_seconds: 0.02}\n  timeout_seconds: 5\n"
)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the next queued status."""

    def __init__(self, port: int = 0):
        self.requests: list[tuple[str, dict]] = []
        self.statuses: list[int] = []  # consumed first; 200 once empty
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.requests.append((self.path, json.loads(body)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"status": "success"}' if status == 200 else b"unavailable")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, path: str) -> list[dict]:
        return [body for request_path, body in self.requests if request_path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.stop()


@pytest.fixture
def lake(tmp_path) -> Path:
    write_events(tmp_path / "lake", read_jsonl(FIXTURES_DIR / "impossible_travel" / "positive.jsonl"))
    return tmp_path / "lake"


def write_config(tmp_path: Path, sinks: str, routing_extra: str = FAST_RETRY):
    path = tmp_path / "usagewatch.yml"
    path.write_text(
        "state:\n  path: state/state.duckdb\n  audit_log: state/audit.jsonl\n"
        f"routing:\n{routing_extra}  sinks:\n{sinks}"
    )
    return load_config(str(path))


def test_every_sink_gets_its_format_once(tmp_path, lake, receiver, monkeypatch):
    monkeypatch.setenv("UW_TEST_PD_KEY", "pd-routing-key")
    monkeypatch.setenv("UW_TEST_SLACK_URL", f"{receiver.url}/slack")
    config = write_config(
        tmp_path,
        f"    - {{name: pager, type: pagerduty, routing_key_env: UW_TEST_PD_KEY, url: '{receiver.url}/pd',"
        " min_severity: medium}\n"
        "    - {name: chat, type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n"
        f"    - {{name: am, type: webhook, url: '{receiver.url}/am'}}\n"
        "    - {name: file, type: jsonl, path: out/routed.jsonl}\n",
    )

    run = detect_and_route(lake, config, only="impossible_travel", now=NOW)

    assert {alert["entity_id"] for alert in run.recorded.new} == {"acct-hopper", "acct-simultaneous"}
    assert run.delivery.delivered == 8 and run.delivery.pending == 0
    pages = receiver.at("/pd")
    assert len(pages) == 2
    page = next(p for p in pages if p["payload"]["custom_details"]["entity_id"] == "acct-hopper")
    hopper = next(a for a in run.alerts if a["entity_id"] == "acct-hopper")
    assert page["routing_key"] == "pd-routing-key"
    assert page["event_action"] == "trigger"
    assert page["dedup_key"] == hopper["dedup_key"] == "impossible_travel:acct-hopper"
    assert page["payload"]["severity"] == "warning"  # medium -> warning
    assert page["payload"]["source"] == "usagewatch" and page["payload"]["summary"].startswith("[MEDIUM]")
    assert page["payload"]["custom_details"]["alert_id"] == hopper["alert_id"]

    webhook = next(b for b in receiver.at("/am") if b["commonLabels"]["entity_id"] == "acct-hopper")
    assert webhook["version"] == "4" and webhook["status"] == "firing" and webhook["receiver"] == "am"
    (firing,) = webhook["alerts"]
    assert firing["labels"]["alertname"] == "impossible_travel" and firing["labels"]["severity"] == "medium"
    assert firing["startsAt"] == hopper["window_start"] and firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert firing["fingerprint"] == hopper["alert_id"][:16]

    slack = next(b for b in receiver.at("/slack") if "acct-hopper" in b["text"])
    assert slack["text"].startswith("[MEDIUM] Impossible travel")
    assert slack["blocks"][0]["text"]["text"] == slack["text"]

    routed = read_jsonl(tmp_path / "out" / "routed.jsonl")
    for alert in routed:
        validate_alert(alert)
    assert sorted(a["alert_id"] for a in routed) == sorted(a["alert_id"] for a in run.alerts)

    again = detect_and_route(lake, config, only="impossible_travel", now=NOW + dt.timedelta(minutes=1))

    assert again.recorded.new == [] and len(again.recorded.seen_again) == 2
    assert again.delivery.delivered == 0
    assert len(receiver.requests) == 6  # nothing re-notified
    assert len(read_jsonl(tmp_path / "out" / "routed.jsonl")) == 2


def test_min_severity_keeps_info_alerts_off_the_pager(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("UW_TEST_PD_KEY", "k")
    write_events(tmp_path / "lake", read_jsonl(FIXTURES_DIR / "impossible_travel" / "negative.jsonl"))
    config = write_config(
        tmp_path,
        f"    - {{name: pager, type: pagerduty, routing_key_env: UW_TEST_PD_KEY, url: '{receiver.url}/pd',"
        " min_severity: medium}\n"
        f"    - {{name: am, type: webhook, url: '{receiver.url}/am', min_severity: info}}\n",
    )

    run = detect_and_route(tmp_path / "lake", config, only="impossible_travel", now=NOW)

    assert [alert["severity"] for alert in run.recorded.new] == ["info"]
    assert receiver.at("/pd") == [] and len(receiver.at("/am")) == 1


def test_a_sink_down_during_one_run_gets_the_alert_on_the_next(tmp_path, lake):
    with socket.socket() as probe:  # a port nothing listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, f"    - {{name: am, type: webhook, url: 'http://127.0.0.1:{port}/am'}}\n")

    down = detect_and_route(lake, config, only="impossible_travel", now=NOW)

    assert down.delivery.delivered == 0 and down.delivery.pending == 2
    assert "cannot reach 127.0.0.1" in down.delivery.failed[0]
    with AlertStore.open(tmp_path / "state" / "state.duckdb") as store:
        rows = [store.get(alert["alert_id"])["deliveries"][0] for alert in down.recorded.new]
    # The first alert exhausted its 2 tries; that marks the sink unreachable for the rest of the run,
    # so the second waits in the outbox untried.
    assert sorted((row["attempts"], row["last_error"] is not None) for row in rows) == [(0, False), (2, True)]
    assert all(row["delivered_at"] is None for row in rows)

    receiver = Receiver(port)
    try:
        up = detect_and_route(lake, config, only="impossible_travel", now=NOW + dt.timedelta(hours=1))
    finally:
        receiver.stop()

    assert up.recorded.new == []  # nothing new was detected...
    assert up.delivery.delivered == 2 and up.delivery.pending == 0  # ...but the outbox was drained
    assert sorted(b["commonLabels"]["alert_id"] for b in receiver.at("/am")) == sorted(
        a["alert_id"] for a in down.recorded.new
    )


def test_transient_errors_are_retried_within_the_run(tmp_path, lake, receiver):
    receiver.statuses = [503]
    config = write_config(tmp_path, f"    - {{name: am, type: webhook, url: '{receiver.url}/am'}}\n")

    run = detect_and_route(lake, config, only="impossible_travel", now=NOW)

    assert run.delivery.delivered == 2 and run.delivery.failed == []
    with AlertStore.open(tmp_path / "state" / "state.duckdb") as store:
        attempts = sorted(store.get(a["alert_id"])["deliveries"][0]["attempts"] for a in run.recorded.new)
    assert attempts == [1, 2]


def test_ack_and_resolve_are_routed_and_audited(tmp_path, lake, receiver, monkeypatch, capsys):
    monkeypatch.setenv("UW_TEST_PD_KEY", "pd-routing-key")
    monkeypatch.setenv("UW_TEST_SLACK_URL", f"{receiver.url}/slack")
    config = write_config(
        tmp_path,
        f"    - {{name: pager, type: pagerduty, routing_key_env: UW_TEST_PD_KEY, url: '{receiver.url}/pd'}}\n"
        "    - {name: chat, type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n"
        f"    - {{name: am, type: webhook, url: '{receiver.url}/am'}}\n",
    )
    run = detect_and_route(lake, config, only="impossible_travel", now=NOW)
    hopper = next(a for a in run.alerts if a["entity_id"] == "acct-hopper")
    receiver.requests.clear()
    common = ["--config", str(config.path)]

    assert (
        cli.main(["alerts", "ack", hopper["alert_id"][:8], "--by", "alice", "--note", "on it", *common]) == 0
    )

    assert "acknowledged by alice" in capsys.readouterr().out
    (ack,) = receiver.at("/pd")
    assert ack == {
        "routing_key": "pd-routing-key",
        "event_action": "acknowledge",
        "dedup_key": hopper["dedup_key"],
    }
    (slack,) = receiver.at("/slack")
    assert slack["text"].startswith("Acknowledged by alice: [MEDIUM]") and "on it" in json.dumps(
        slack["blocks"]
    )
    assert receiver.at("/am") == []  # Alertmanager's shape has no acknowledgement

    assert cli.main(["alerts", "ack", hopper["alert_id"], "--by", "bob", *common]) == 1
    assert "cannot mark it acknowledged" in capsys.readouterr().err

    receiver.requests.clear()
    assert cli.main(["alerts", "resolve", hopper["alert_id"], "--by", "alice", *common]) == 0
    assert [p["event_action"] for p in receiver.at("/pd")] == ["resolve"]
    (resolved,) = receiver.at("/am")
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

    records = read_jsonl(tmp_path / "state" / "audit.jsonl")
    assert [r["kind"] for r in records] == ["alert", "alert", "ack", "resolve"]
    assert records[2]["payload"] == {
        "alert_id": hopper["alert_id"],
        "dedup_key": hopper["dedup_key"],
        "by": "alice",
        "note": "on it",
    }
    assert cli.main(["audit", "verify", *common]) == 0


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info"), ("info", "info")],
)
def test_pagerduty_severity_mapping(severity, expected):
    alert = {
        "alert_id": "a" * 32,
        "detection_id": "d",
        "title": "t",
        "severity": severity,
        "entity_type": "account",
        "entity_id": "acct",
        "account_ids": ["acct"],
        "window_start": "2026-03-01T10:00:00.000Z",
        "window_end": "2026-03-01T11:00:00.000Z",
        "evidence": {},
        "runbook": "r",
        "dedup_key": "d:acct",
        "created_at": "2026-03-02T00:00:00.000Z",
        "risk_score": 30,
        "immediate": False,
    }
    delivery = Delivery(alert["alert_id"], "pager", "trigger", 0, alert, "open", None, None, None)
    assert PagerDutySink(name="pager", routing_key="k").payload(delivery)["payload"]["severity"] == expected


def test_a_missing_secret_fails_fast_naming_the_variable(tmp_path, lake, monkeypatch):
    monkeypatch.delenv("UW_TEST_UNSET_KEY", raising=False)
    config = write_config(
        tmp_path, "    - {name: pager, type: pagerduty, routing_key_env: UW_TEST_UNSET_KEY}\n"
    )

    with pytest.raises(RoutingError, match="environment variable UW_TEST_UNSET_KEY"):
        detect_and_route(lake, config, now=NOW)
    assert not (tmp_path / "state").exists()  # nothing ran, nothing recorded


@pytest.mark.parametrize(
    ("sinks", "message"),
    [
        ("    - {type: sms}\n", "type must be one of"),
        ("    - {type: webhook, url: 'https://hooks.example.com/x'}\n", "literal 'url' must be local"),
        ("    - {type: stdout}\n    - {type: stdout}\n", "names must be unique"),
        ("    - {type: jsonl, path: a.jsonl, min_severity: urgent}\n", "min_severity must be one of"),
        ("    - {type: stdout, colour: red}\n", "unknown key"),
    ],
)
def test_bad_routing_config_names_the_file_and_line(tmp_path, sinks, message):
    config = write_config(tmp_path, sinks)
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:4: .*{message}"):
        load_router(config)


def test_a_malformed_secret_url_is_reported_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("UW_TEST_SLACK_URL", "hooks.slack.example/T000/B000/secret-token")
    config = write_config(tmp_path, "    - {type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n")
    with pytest.raises(ConfigError, match="is not an http") as raised:
        load_router(config)
    assert "secret-token" not in str(raised.value)


@pytest.mark.integration
def test_kafka_sink_publishes_the_alert(tmp_path, lake, kafka_bootstrap, unique_topic):
    from kafka import KafkaConsumer

    topic = unique_topic()
    config = write_config(
        tmp_path, f"    - {{name: bus, type: kafka, topic: {topic}, bootstrap: '{kafka_bootstrap}'}}\n"
    )

    run = detect_and_route(lake, config, only="impossible_travel", now=NOW)

    assert run.delivery.delivered == 2
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=30_000
    )
    try:
        received = []
        for message in consumer:
            received.append((message.key.decode(), json.loads(message.value)))
            if len(received) == 2:
                break
    finally:
        consumer.close()
    for key, alert in received:
        validate_alert(alert)
        assert key == alert["dedup_key"]
    assert sorted(alert["alert_id"] for _, alert in received) == sorted(a["alert_id"] for a in run.alerts)
