"""Routing incidents against a real local HTTP server (PagerDuty, Alertmanager, Slack endpoints): payload
shapes, one trigger per incident, updates, retries, the outbox, ack/resolve, secrets."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lakefixture import read_jsonl, write_events
from signalfixture import NOW, RING, Engine, ring_signals, signal
from urllib3.util.retry import RequestHistory

from pipelines.commands import cli
from pipelines.detect.detections import DETECTIONS_DIR, detect_and_route
from pipelines.incidents.alert_state import Delivery
from pipelines.incidents.routing import RoutingError, incident_pages_dir, load_router, page_file_name
from pipelines.incidents.sinks import ALERTMANAGER_ALERTNAME, PagerDutySink, RetryPolicy
from pipelines.infra.config import ConfigError, load_config
from pipelines.quality.settings import quality_settings
from pipelines.stream.contracts import validate_incident

FAST_RETRY = (
    "  retry: {attempts: 2, backoff_seconds: 0.01, max_backoff_seconds: 0.02}\n  timeout_seconds: 5\n"
)
PAGES = "  incident_page_base_url: 'https://usagewatch.example/incidents/'\n"
LATER = NOW + dt.timedelta(hours=1)
NEWCOMERS = [f"late-{index}" for index in range(5)]


def grown_ring() -> list[dict]:
    """The ring an hour later: its hosting IP now also serves five new accounts."""
    return [signal("shared_hosting_infrastructure", "203.0.113.7", RING[:3] + NEWCOMERS, 6, 40)]


def two_lone_accounts() -> list[dict]:
    """Two unrelated accounts, each over the open threshold on its own: two incidents."""
    signals = []
    for account in ("acct-a", "acct-b"):
        signals += [signal("extraction_profile", account, [account], 0, 60)]
        signals += [signal("impossible_travel", account, [account], 1, 45)]
    return signals


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the next queued status."""

    def __init__(self, port: int = 0):
        self.requests: list[tuple[str, dict]] = []  # the accepted ones
        self.hits: list[tuple[float, int]] = []  # (monotonic time, status) of every POST
        self.statuses: list[int | tuple[int, dict[str, str]]] = []  # (with headers) consumed first; then 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                status, headers = status if isinstance(status, tuple) else (status, {})
                receiver.hits.append((time.monotonic(), status))
                if status == 200:
                    receiver.requests.append((self.path, json.loads(body)))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
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
    write_events(tmp_path / "lake", read_jsonl(DETECTIONS_DIR / "impossible_travel" / "positive.jsonl"))
    return tmp_path / "lake"


def write_config(tmp_path: Path, sinks: str, routing_extra: str = FAST_RETRY):
    path = tmp_path / "usagewatch.yml"
    path.write_text(
        "state:\n  path: state/state.duckdb\n  audit_log: state/audit.jsonl\n"
        f"routing:\n{routing_extra}  sinks:\n{sinks}"
    )
    return load_config(str(path))


def http_sinks(receiver: Receiver, pager_min: str = "medium") -> str:
    return (
        f"    - {{name: pager, type: pagerduty, routing_key_env: UW_TEST_PD_KEY, url: '{receiver.url}/pd',"
        f" min_severity: {pager_min}}}\n"
        "    - {name: chat, type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n"
        f"    - {{name: am, type: alertmanager, url: '{receiver.url}/api/v2/alerts'}}\n"
        "    - {name: file, type: jsonl, path: out/routed.jsonl}\n"
    )


@pytest.fixture
def secrets(receiver, monkeypatch):
    monkeypatch.setenv("UW_TEST_PD_KEY", "pd-routing-key")
    monkeypatch.setenv("UW_TEST_SLACK_URL", f"{receiver.url}/slack")


def test_one_trigger_per_incident_and_an_update_when_the_ring_grows(tmp_path, receiver, secrets):
    engine = Engine(tmp_path, http_sinks(receiver), retry=FAST_RETRY + PAGES)

    opened = engine.run(ring_signals() + two_lone_accounts())

    assert sorted(len(c["account_ids"]) for c in opened.changes) == [1, 1, len(RING)]
    assert opened.delivery.delivered == 12 and opened.delivery.pending == 0  # 3 incidents x 4 sinks
    ring = next(c for c in opened.changes if len(c["account_ids"]) == len(RING))
    pages = receiver.at("/pd")
    assert len(pages) == 3 and len({page["dedup_key"] for page in pages}) == 3
    page = next(p for p in pages if p["dedup_key"] == ring["incident_id"])
    assert page["routing_key"] == "pd-routing-key" and page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical" and page["payload"]["source"] == "usagewatch"
    assert page["payload"]["custom_details"]["account_count"] == len(RING)
    assert page["payload"]["summary"].startswith("[CRITICAL]")
    link = f"https://usagewatch.example/incidents/{page_file_name(ring['incident_id'])}"
    assert page["links"] == [{"href": link, "text": "Incident page"}]

    posts = receiver.at("/api/v2/alerts")
    assert all(isinstance(body, list) for body in posts)
    (ring_alert,) = next(body for body in posts if body[0]["labels"]["incident_id"] == ring["incident_id"])
    labels = {"alertname": ALERTMANAGER_ALERTNAME, "incident_id": ring["incident_id"], "severity": "critical"}
    assert ring_alert["labels"] == labels
    assert ring_alert["startsAt"] == ring["first_seen"] and ring_alert["endsAt"] > ring_alert["startsAt"]
    assert ring_alert["generatorURL"] == link

    slack = next(body for body in receiver.at("/slack") if ring["incident_id"][:12] in body["text"])
    assert slack["text"].startswith("[CRITICAL]") and slack["blocks"][0]["text"]["text"] == slack["text"]
    assert ring["summary"] in json.dumps(slack["blocks"])
    (button,) = [e for b in slack["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["type"] == "button" and button["url"] == link
    receiver.requests.clear()

    grown = engine.run(grown_ring(), LATER)

    (update,) = grown.changes
    assert update["incident_id"] == ring["incident_id"] and update["change"] == "updated"
    (fold,) = receiver.at("/pd")  # a trigger with the same dedup_key: PagerDuty folds it in, no new page
    assert fold["event_action"] == "trigger" and fold["dedup_key"] == ring["incident_id"]
    (again,) = receiver.at("/api/v2/alerts")
    assert [alert["labels"] for alert in again] == [labels]  # same labels: Alertmanager groups it
    (line,) = receiver.at("/slack")
    assert line == {
        "text": f"incident {ring['incident_id'][:12]} grew: +5 accounts, +1 signals "
        f"({len(RING) + 5} accounts, risk {update['risk_score']}) <{link}|incident page>"
    }
    routed = read_jsonl(tmp_path / "out" / "routed.jsonl")
    for incident in routed:
        validate_incident(incident)
        assert (
            incident["incident_page"]
            == f"https://usagewatch.example/incidents/{page_file_name(incident['incident_id'])}"
        )
    assert [r["change"] for r in routed if r["incident_id"] == ring["incident_id"]] == ["opened", "updated"]

    receiver.requests.clear()
    assert engine.run(ring_signals() + grown_ring(), LATER).changes == []
    assert receiver.requests == []  # nothing new: nothing sent


def test_min_severity_keeps_low_incidents_off_the_pager(tmp_path, receiver, secrets):
    engine = Engine(tmp_path, http_sinks(receiver, pager_min="high"), retry=FAST_RETRY)
    low = signal("restricted_region_access", "acct-x", ["acct-x"], 0, 40, severity="low", immediate=True)

    (incident,) = engine.run([low]).changes

    assert incident["severity"] == "low"
    assert receiver.at("/pd") == [] and len(receiver.at("/api/v2/alerts")) == 1


def test_a_sink_down_during_one_run_gets_the_incident_on_the_next(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sinks = f"    - {{name: am, type: alertmanager, url: 'http://127.0.0.1:{port}/api/v2/alerts'}}\n"
    engine = Engine(tmp_path, sinks, retry=FAST_RETRY)

    down = engine.run(two_lone_accounts())

    assert down.delivery.delivered == 0 and down.delivery.pending == 2
    assert "cannot reach 127.0.0.1" in down.delivery.failed[0]
    with engine.store() as store:
        rows = [store.get_incident(c["incident_id"])["deliveries"][0] for c in down.changes]
    # The first incident exhausted its 2 tries; that marks the sink unreachable for the rest of the run,
    # so the second waits in the outbox untried.
    assert sorted((row["attempts"], row["last_error"] is not None) for row in rows) == [(0, False), (2, True)]
    assert all(row["delivered_at"] is None for row in rows)

    receiver = Receiver(port)
    try:
        up = engine.run(two_lone_accounts(), LATER)
    finally:
        receiver.stop()

    assert up.changes == []  # nothing changed...
    assert up.delivery.delivered == 2 and up.delivery.pending == 0  # ...but the outbox was drained
    assert sorted(body[0]["labels"]["incident_id"] for body in receiver.at("/api/v2/alerts")) == sorted(
        c["incident_id"] for c in down.changes
    )


def test_transient_errors_are_retried_within_the_run(tmp_path, receiver):
    receiver.statuses = [503]
    engine = Engine(
        tmp_path, f"    - {{name: am, type: alertmanager, url: '{receiver.url}/am'}}\n", retry=FAST_RETRY
    )

    run = engine.run(two_lone_accounts())

    assert run.delivery.delivered == 2 and run.delivery.failed == []
    with engine.store() as store:
        attempts = sorted(
            store.get_incident(c["incident_id"])["deliveries"][0]["attempts"] for c in run.changes
        )
    assert attempts == [1, 2]


def am_engine(tmp_path: Path, receiver: Receiver, retry: str = FAST_RETRY) -> Engine:
    return Engine(
        tmp_path, f"    - {{name: am, type: alertmanager, url: '{receiver.url}/am'}}\n", retry=retry
    )


def outbox_row(engine: Engine, incident_id: str) -> dict:
    with engine.store() as store:
        (row,) = store.get_incident(incident_id)["deliveries"]
    return row


def test_a_rejected_notification_is_not_retried_and_waits_in_the_outbox(tmp_path, receiver):
    receiver.statuses = [400]
    engine = am_engine(tmp_path, receiver)

    run = engine.run(two_lone_accounts()[:2])

    assert [status for _, status in receiver.hits] == [400]  # a 4xx once: the same request cannot cure it
    (incident,) = run.changes
    row = outbox_row(engine, incident["incident_id"])
    assert row["attempts"] == 1 and row["delivered_at"] is None
    assert "HTTP 400" in row["last_error"] and "not retried" in row["last_error"]

    later = engine.run([], LATER)  # kept, not lost: a later run delivers it
    assert later.delivery.delivered == 1 and [s for _, s in receiver.hits] == [400, 200]


def test_429_waits_what_retry_after_asks(tmp_path, receiver):
    receiver.statuses = [(429, {"Retry-After": "1"})]
    # Its own backoff is 0.01 s: a 1 s gap is the receiver's ask, within the 5 s a run waits.
    engine = am_engine(
        tmp_path, receiver, FAST_RETRY.replace("max_backoff_seconds: 0.02", "max_backoff_seconds: 5")
    )

    run = engine.run(two_lone_accounts()[:2])

    assert run.delivery.delivered == 1
    (first, _), (second, status) = receiver.hits
    assert status == 200 and second - first >= 1.0
    assert outbox_row(engine, run.changes[0]["incident_id"])["attempts"] == 2


def test_server_errors_are_retried_until_the_attempts_run_out_then_wait_for_retry_after(tmp_path, receiver):
    receiver.statuses = [503, 502, (429, {"Retry-After": "120"}), 503]
    engine = am_engine(tmp_path, receiver, retry=FAST_RETRY.replace("attempts: 2", "attempts: 3"))

    run = engine.run(two_lone_accounts()[:2])

    assert [status for _, status in receiver.hits] == [503, 502, 429]
    row = outbox_row(engine, run.changes[0]["incident_id"])
    assert (
        row["attempts"] == 3
        and "HTTP 429" in row["last_error"]
        and "gave up after 3 tries" in row["last_error"]
    )
    # The next run may not try before the receiver's 120 s, though the backoff alone would be 0.02 s.
    assert row["next_attempt_at"] >= NOW.replace(tzinfo=None) + dt.timedelta(seconds=119)
    assert engine.run([], NOW + dt.timedelta(seconds=60)).delivery.delivered == 0
    assert len(receiver.hits) == 3
    assert engine.run([], NOW + dt.timedelta(seconds=121)).delivery.delivered == 1
    assert [status for _, status in receiver.hits[3:]] == [503, 200]


def test_the_backoff_doubles_with_jitter_up_to_its_cap():
    retry = RetryPolicy(attempts=6, backoff_seconds=1, max_backoff_seconds=3).http_retry()

    def waits(failures: int) -> list[float]:
        failed = retry.new(history=(RequestHistory("POST", "/", None, 503, None),) * failures)
        return [failed.get_backoff_time() for _ in range(50)]

    first = waits(1)  # urllib3 alone would retry at once
    assert all(0.5 <= wait <= 1 for wait in first) and len(set(first)) > 1  # jittered
    assert all(1 <= wait <= 2 for wait in waits(2))
    assert all(1.5 <= wait <= 3 for wait in waits(5))  # 16 s capped at 3


HOSTILE_ACCOUNT = "<!channel> & <@U024BE7LH>"
# Our own markup: a link <https://…|label>; everything else that Slack would parse must be escaped.
_SLACK_LINK = re.compile(r"<https?://[^<>|]+\|[^<>]+>")


def _slack_texts(value) -> list[str]:
    if isinstance(value, dict):
        return [text for key, item in value.items() if key != "url" for text in _slack_texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _slack_texts(item)]
    return [value] if isinstance(value, str) else []


def test_slack_text_from_event_data_and_notes_is_escaped(tmp_path, receiver, secrets):
    engine = Engine(
        tmp_path,
        "    - {name: chat, type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n",
        retry=FAST_RETRY + PAGES,
    )
    hostile = [signal("extraction_profile", HOSTILE_ACCOUNT, [HOSTILE_ACCOUNT], 0, 60)]
    hostile += [signal("shared_hosting_infrastructure", "<!here>&<b>", [HOSTILE_ACCOUNT, "x>y"], 1, 60)]
    for found in hostile:
        found["title"] = "<!everyone> title & <@u1>"
    (incident,) = engine.run(hostile).changes
    assert HOSTILE_ACCOUNT in incident["account_ids"] and "<!everyone>" in incident["title"]
    note = ["--note", "<!channel> paging everyone & <@U0G9QF9C6> <https://evil.example|login>"]
    command = ["incidents", "ack", incident["incident_id"], "--by", "<!subteam^S1> bob", *note]
    assert cli.main([*command, "--config", str(engine.config.path)]) == 0

    opened, acknowledged = receiver.at("/slack")
    for message in (opened, acknowledged):
        texts = _slack_texts(message)
        everything = "\n".join(texts)
        assert "&lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;" in everything  # the account id, shown as text
        for text in texts:
            markup_left = _SLACK_LINK.sub("", text)
            assert "<" not in markup_left and ">" not in markup_left, text
            assert not re.search(r"&(?!amp;|lt;|gt;)", markup_left), text
    acknowledged_text = "\n".join(_slack_texts(acknowledged))
    assert "&lt;!channel&gt; paging everyone &amp; &lt;@U0G9QF9C6&gt;" in acknowledged_text
    assert "&lt;https://evil.example|login&gt;" in acknowledged_text
    assert "Acknowledged by &lt;!subteam^S1&gt; bob" in acknowledged["text"]
    assert "&lt;!everyone&gt; title &amp; &lt;@u1&gt;" in opened["text"]
    assert "&lt;!here&gt;&amp;&lt;b&gt;" in "\n".join(_slack_texts(opened))  # the evidence's IP entity


def test_without_a_base_url_notifications_link_the_page_file_under_the_reports_dir(tmp_path, receiver):
    engine = am_engine(tmp_path, receiver)

    (incident,) = engine.run(two_lone_accounts()[:2]).changes

    ((alert,),) = receiver.at("/am")
    page = incident_pages_dir(quality_settings(engine.config).reports_dir) / page_file_name(
        incident["incident_id"]
    )
    assert alert["generatorURL"] == page.as_uri() and alert["generatorURL"].startswith("file:///")


def test_ack_and_resolve_are_forwarded_and_audited(tmp_path, receiver, secrets, capsys):
    engine = Engine(tmp_path, http_sinks(receiver), retry=FAST_RETRY)
    (incident,) = engine.run(ring_signals()).changes
    receiver.requests.clear()
    common = ["--config", str(engine.config.path)]

    assert (
        cli.main(
            ["incidents", "ack", incident["incident_id"][:8], "--by", "alice", "--note", "on it", *common]
        )
        == 0
    )

    assert "acknowledged by alice" in capsys.readouterr().out
    (ack,) = receiver.at("/pd")
    assert ack == {
        "routing_key": "pd-routing-key",
        "event_action": "acknowledge",
        "dedup_key": incident["incident_id"],
    }
    (slack,) = receiver.at("/slack")
    assert slack["text"].startswith("Acknowledged by alice: [CRITICAL]") and "on it" in json.dumps(
        slack["blocks"]
    )
    assert receiver.at("/api/v2/alerts") == []  # Alertmanager's alert model has no acknowledgement
    # The page every notification links shows the incident as it now stands.
    page = incident_pages_dir(quality_settings(engine.config).reports_dir) / page_file_name(
        incident["incident_id"]
    )
    assert "Acknowledged by alice" in page.read_text() and "on it" in page.read_text()

    assert cli.main(["incidents", "ack", incident["incident_id"], "--by", "bob", *common]) == 1
    assert "cannot mark it acknowledged" in capsys.readouterr().err

    receiver.requests.clear()
    assert (
        cli.main(["incidents", "resolve", incident["incident_id"], "--by", "alice", "--json", *common]) == 0
    )
    resolved = json.loads(capsys.readouterr().out)
    validate_incident(resolved)
    assert resolved["status"] == "resolved" and resolved["resolved"]["by"] == "alice"
    assert [p["event_action"] for p in receiver.at("/pd")] == ["resolve"]
    assert " · resolved · " in page.read_text()
    ((ended,),) = receiver.at("/api/v2/alerts")
    assert ended["labels"]["incident_id"] == incident["incident_id"]
    assert ended["endsAt"] <= dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.999Z")

    with engine.store() as store:
        assert {row["status"] for row in store.list_alerts()} == {"resolved"}  # every signal in it
    records = read_jsonl(tmp_path / "audit.jsonl")
    changes = [r["payload"]["change"] for r in records if r["kind"] == "incident"]
    assert changes == ["opened", "acknowledged", "resolved"]
    assert records[-2]["payload"]["by"] == "alice" and records[-2]["payload"]["note"] == "on it"
    assert cli.main(["audit", "verify", *common]) == 0
    assert "chain intact" in capsys.readouterr().out

    assert cli.main(["incidents", "list", "--json", *common]) == 0
    assert [i["status"] for i in json.loads(capsys.readouterr().out)] == ["resolved"]


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info"), ("info", "info")],
)
def test_pagerduty_severity_mapping(tmp_path, severity, expected):
    (incident,) = (
        Engine(tmp_path)
        .run([signal("impossible_travel", "acct", ["acct"], 0, 30, severity, immediate=True)])
        .changes
    )
    routed = {**incident, "incident_page": "https://usagewatch.example/incidents/x.html"}
    delivery = Delivery(1, incident["incident_id"], "pager", "opened", "trigger", 0, routed)
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
        ("    - {type: alertmanager, url: 'https://am.example.com/x'}\n", "literal 'url' must be local"),
        ("    - {type: webhook, url: 'http://127.0.0.1/x'}\n", "type must be one of"),
        ("    - {type: stdout}\n    - {type: stdout}\n", "names must be unique"),
        ("    - {type: jsonl, path: a.jsonl, min_severity: urgent}\n", "min_severity must be one of"),
        ("    - {type: stdout, colour: red}\n", "unknown key"),
    ],
)
def test_bad_routing_config_names_the_file_and_line(tmp_path, sinks, message):
    config = write_config(tmp_path, sinks)
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:4: .*{message}"):
        load_router(config)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'ftp://pages.example/incidents'", "is not an http"),
        ("42", "must be a URL"),
        ("'http://h:99999/'", "invalid"),
    ],
)
def test_a_bad_incident_page_base_url_names_the_file_and_its_line(tmp_path, value, message):
    config = write_config(
        tmp_path, "    - {type: stdout}\n", FAST_RETRY + f"  incident_page_base_url: {value}\n"
    )
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:7: routing\.incident_page_base_url.*{message}"):
        load_router(config)


def test_a_malformed_secret_url_is_reported_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("UW_TEST_SLACK_URL", "hooks.slack.example/T000/B000/secret-token")
    config = write_config(tmp_path, "    - {type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n")
    with pytest.raises(ConfigError, match="is not an http") as raised:
        load_router(config)
    assert "secret-token" not in str(raised.value)


@pytest.mark.integration
def test_kafka_sink_carries_the_incident_and_its_update(tmp_path, kafka_bootstrap, unique_topic):
    from kafka import KafkaConsumer

    topic = unique_topic()
    engine = Engine(
        tmp_path,
        f"    - {{name: bus, type: kafka, topic: {topic}, bootstrap: '{kafka_bootstrap}'}}\n",
        retry=FAST_RETRY,
    )

    opened = engine.run(ring_signals())
    grown = engine.run(grown_ring(), LATER)

    assert opened.delivery.delivered == 1 and grown.delivery.delivered == 1
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
    for key, incident in received:
        validate_incident(incident)
        assert key == incident["incident_id"] == opened.changes[0]["incident_id"]
    assert [incident["change"] for _, incident in received] == ["opened", "updated"]
    assert len(received[1][1]["account_ids"]) == len(RING) + len(NEWCOMERS)
