"""Issue 11, finding 5: a secret never reaches output, logs, tracebacks, state rows or the audit log.

A canary secret is planted where secrets live (environment URLs with `user:password@`, query strings,
Slack path tokens, a PagerDuty routing key, a literal remote URL in the configuration) and every
failure path of every sink and configuration check is driven; the canary must appear nowhere.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from signalfixture import Engine, ring_signals

from pipelines.commands import cli
from pipelines.incidents.routing import load_router
from pipelines.infra import redaction
from pipelines.infra.config import ConfigError, load_config

CANARY = "Cnry7Xq93"
FAST = "  retry: {attempts: 1, backoff_seconds: 0, max_backoff_seconds: 0}\n  timeout_seconds: 1\n"


class EchoingServer:
    """Answers every POST with an error whose body echoes the request line and body: what a
    misconfigured proxy or an API's validation error does with a token in the URL or the payload."""

    def __init__(self, status: int):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(f"rejected {self.path}: ".encode() + body[:200])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def echo():
    server = EchoingServer(400)
    yield server
    server.stop()


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text, text


def test_the_canary_reaches_no_output_state_or_audit_on_any_sink_failure(tmp_path, echo, monkeypatch, capfd):
    base = f"http://127.0.0.1:{echo.port}"
    monkeypatch.setenv("UW_CANARY_SLACK", f"{base}/services/T0{CANARY}/B0{CANARY}/x{CANARY}?token={CANARY}")
    monkeypatch.setenv("UW_CANARY_PD", f"pdkey{CANARY}")
    monkeypatch.setenv("UW_CANARY_AM", f"http://am:{CANARY}pw@127.0.0.1:{echo.port}/api/v2/alerts?t={CANARY}")
    (tmp_path / "blocked").write_text("a file where the jsonl sink wants a folder")
    sinks = (
        "    - {name: chat, type: slack, webhook_url_env: UW_CANARY_SLACK}\n"
        f"    - {{name: pager, type: pagerduty, routing_key_env: UW_CANARY_PD, url: '{base}/pd'}}\n"
        "    - {name: am, type: alertmanager, url_env: UW_CANARY_AM}\n"
        "    - {name: file, type: jsonl, path: blocked/routed.jsonl}\n"
        "    - {name: bus, type: kafka, topic: incidents, bootstrap: '127.0.0.1:1'}\n"
    )
    engine = Engine(tmp_path, sinks, retry=FAST)

    (incident,) = engine.run(ring_signals()).changes
    common = ["--config", str(engine.config.path)]
    assert cli.main(["incidents", "ack", incident["incident_id"], "--by", "alice", *common]) == 0
    assert cli.main(["incidents", "show", incident["incident_id"], *common]) == 0
    assert cli.main(["incidents", "show", incident["incident_id"], "--json", *common]) == 0

    out, err = capfd.readouterr()
    assert "failed" in err  # every sink did fail, and said so
    with engine.store() as store:
        deliveries = store.get_incident(incident["incident_id"])["deliveries"]
        rows = store.con.execute("select * from outbox").fetchall()
    assert {d["sink"] for d in deliveries if d["last_error"]} == {"chat", "pager", "am", "file", "bus"}
    assert_no_canary(out, err, json.dumps(deliveries, default=str), repr(rows))
    assert_no_canary((tmp_path / "audit.jsonl").read_text())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("UW_CANARY_SLACK", f"https://hooks.slack.example:{CANARY}/services/T0/B0/{CANARY}"),  # bad port
        ("UW_CANARY_SLACK", f"hooks.slack.example/services/T0/B0/{CANARY}"),  # no scheme
        ("UW_CANARY_SLACK", f"ftp://user:{CANARY}@hooks.slack.example/x"),
    ],
)
def test_a_malformed_secret_url_fails_at_load_without_echoing_it(
    tmp_path, monkeypatch, capfd, variable, value
):
    monkeypatch.setenv(variable, value)
    config_file = tmp_path / "usagewatch.yml"
    config_file.write_text(f"routing:\n  sinks:\n    - {{type: slack, webhook_url_env: {variable}}}\n")

    with pytest.raises(ConfigError) as raised:
        load_router(load_config(str(config_file)))
    assert_no_canary(str(raised.value))
    assert cli.main(["incidents", "ack", "abcdef123", "--by", "x", "--config", str(config_file)]) == 2
    out, err = capfd.readouterr()
    assert "usagewatch.yml" in err and "Traceback" not in err
    assert_no_canary(out, err)


def test_a_literal_remote_url_is_refused_without_repeating_it(tmp_path):
    config_file = tmp_path / "usagewatch.yml"
    config_file.write_text(
        "routing:\n  sinks:\n"
        f"    - {{type: alertmanager, url: 'https://am:{CANARY}@alerts.example.com/api?token={CANARY}'}}\n"
    )
    with pytest.raises(ConfigError, match="must be local") as raised:
        load_router(load_config(str(config_file)))
    assert_no_canary(str(raised.value))
    assert "alerts.example.com" in str(raised.value)  # the host is named, so the line can be found


def test_an_unexpected_error_prints_a_redacted_traceback(monkeypatch, capfd):
    redaction.register_secret(f"tok{CANARY}")

    def explode(args):
        raise RuntimeError(f"sink said: https://u:{CANARY}@h.example/services/T1/B2/tok{CANARY}")

    monkeypatch.setattr(cli, "build_parser", lambda command: _parser_calling(explode))
    assert cli.main(["detect"]) == 1
    out, err = capfd.readouterr()
    assert "Traceback" in err and "RuntimeError" in err and "h.example" in err
    assert_no_canary(out, err)


def _parser_calling(func):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.set_defaults(func=func)
    return parser


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"cannot reach user:{CANARY}@hooks.example:443: refused", "hooks.example:443"),
        (f"POST https://hooks.slack.com/services/T0ABC/B0DEF/{CANARY} failed", "https://hooks.slack.com/"),
        (f"https://events.example/v2/enqueue?routing_key={CANARY}&x=1", "https://events.example/v2/enqueue"),
        (f"Authorization: Bearer {CANARY}", "Authorization:"),
        (f'{{"routing_key": "{CANARY}", "event_action": "trigger"}}', "event_action"),
    ],
)
def test_redact_removes_credentials_and_keeps_where(text, kept):
    redacted = redaction.redact(text)
    assert CANARY not in redacted and kept in redacted
