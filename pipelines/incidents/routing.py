"""Incident routing: the sinks of usagewatch.yml `routing:` and delivery through the state outbox.

Only incidents (schemas/incident.schema.json, made by pipelines/incidents/engine.py) are routed; signals
never are. Every notification is first written to the outbox (pipelines/incidents/alert_state.py), then
delivered with bounded retries and exponential backoff; what a sink did not accept stays in the outbox
and is retried on a later run, so an unreachable sink never loses a notification. Secrets (webhook URLs,
routing keys) come only from environment variables named by `*_env` keys, checked when the configuration
is loaded.

Changes: `opened` and `escalated` page (PagerDuty trigger, Slack message, Alertmanager alert);
`updated` (the incident grew) goes quietly to the sinks it already paged: PagerDuty gets a trigger with
the same dedup_key, which it folds into the open incident; Slack one short line; Alertmanager the same
labels again. `acknowledged` / `resolved` (from `usagewatch incidents ack|resolve`, or a merge) follow to
the sinks that understand them. stdout, jsonl and kafka carry the incident document with `change`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.incidents.alerts import SEVERITIES
from pipelines.incidents.audit import last_line
from pipelines.infra.config import Config
from pipelines.infra.redaction import redact, redact_url, register_secret
from pipelines.infra.rendering import terminal_safe

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the store is handed in by the caller; only the types are needed here
    from pipelines.incidents.alert_state import AlertStore, Delivery

CHANGES = ("opened", "updated", "escalated", "acknowledged", "resolved")
# What each change asks of a sink that has the three PagerDuty-like actions.
ACTION_OF_CHANGE = {
    "opened": "trigger",
    "updated": "trigger",
    "escalated": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# PagerDuty Events API v2 knows four severities.
PAGERDUTY_SEVERITY = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
    "info": "info",
}
PAGERDUTY_SUMMARY_MAX = 1024
ALERTMANAGER_ALERTNAME = "UsagewatchIncident"
# Alertmanager resolves an alert by itself at endsAt unless it is posted again: an open incident is
# posted on every change and resolved explicitly, so a firing one is held this long.
ALERTMANAGER_FIRING_HOLD = dt.timedelta(hours=24)
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Notifications list the first accounts only: a hydra ring has thousands; the full list is in the incident.
ACCOUNTS_IN_NOTIFICATION = 25
_USER_AGENT = "usagewatch-routing/1"


class RoutingError(ValueError):
    """The routing configuration is invalid or a secret's environment variable is missing."""


class DeliveryError(RuntimeError):
    """A sink did not accept a notification."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries per notification within one run
    backoff_seconds: float = 1.0  # wait after the first failure; doubles after each further one
    max_backoff_seconds: float = 60.0  # cap, also for the delay until a later run tries again

    def delay(self, failures: int) -> float:
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(failures - 1, 0))


def _post_json(url: str, body: Any, timeout: float) -> None:
    """POST `body`; a failure is a DeliveryError whose text names the receiver without its secrets.

    Userinfo in the URL (`https://user:password@host/…`) is sent as HTTP basic authentication, never
    as part of the host name.
    """
    split = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
    userinfo, _, host = split.netloc.rpartition("@")
    if userinfo:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode()
        )
        url = urllib.parse.urlunsplit(split._replace(netloc=host))
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
    )
    receiver = host  # named without its userinfo, path or query: those may be the secret
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read(300).decode("utf-8", "replace")
        raise DeliveryError(redact(f"HTTP {error.code} from {receiver}: {detail}")) from None
    except (urllib.error.URLError, OSError, ValueError) as error:  # ValueError: http.client.InvalidURL
        reason = getattr(error, "reason", error)
        raise DeliveryError(redact(f"cannot reach {receiver}: {reason}")) from None


def incident_headline(incident: dict[str, Any]) -> str:
    """One line per incident for pagers, chat and terminals; its title may carry event data, so it is
    escaped."""
    accounts = len(incident["account_ids"])
    return terminal_safe(
        f"[{incident['severity'].upper()}] {incident['title']} "
        f"(incident {incident['incident_id'][:12]}, risk {incident['risk_score']}, "
        f"{accounts} account{'s' if accounts != 1 else ''}) "
        f"{incident['first_seen']} .. {incident['last_seen']}"
    )


def _first_accounts(incident: dict[str, Any]) -> list[str]:
    return incident["account_ids"][:ACCOUNTS_IN_NOTIFICATION]


def _zulu(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Sink:
    name: str
    min_severity: str = "info"
    changes: frozenset[str] = frozenset(CHANGES)
    timeout: float = 10.0

    def accepts(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)

    def send(self, delivery: Delivery) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections opened by send (the Kafka producer)."""


@dataclass
class StdoutSink(Sink):
    def send(self, delivery: Delivery) -> None:
        print(json.dumps(delivery.incident, sort_keys=True), flush=True)


@dataclass
class JsonlSink(Sink):
    path: Path = Path()

    def send(self, delivery: Delivery) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(delivery.incident, sort_keys=True)
        with self.path.open("a+b") as sink:
            # A run killed after this write and before the outbox marked it delivered sends it again:
            # the line is already the file's last one, so it is not written twice.
            if last_line(sink) == line.encode("utf-8"):
                return
            sink.write((line + "\n").encode("utf-8"))


@dataclass
class KafkaSink(Sink):
    topic: str = ""
    bootstrap: str = ""
    _producer: Any = field(default=None, repr=False)

    def send(self, delivery: Delivery) -> None:
        from kafka import KafkaProducer  # imported on first use: most runs have no Kafka sink
        from kafka.errors import KafkaError

        timeout_ms = int(self.timeout * 1000)
        try:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    max_block_ms=timeout_ms,
                    bootstrap_timeout_ms=timeout_ms,
                    request_timeout_ms=timeout_ms,
                    # the producer's own retries must end before the wait below gives up on them
                    delivery_timeout_ms=2 * timeout_ms,
                )
            # Keyed by incident id: one incident's changes stay in order on one partition.
            future = self._producer.send(
                self.topic,
                key=delivery.incident["incident_id"].encode("utf-8"),
                value=json.dumps(delivery.incident, sort_keys=True).encode("utf-8"),
            )
            future.get(timeout=3 * self.timeout)
        except KafkaError as error:
            self.close()  # a fresh producer next time, rather than one stuck on a dead broker
            raise DeliveryError(redact(f"kafka {self.bootstrap} topic {self.topic}: {error!r}")) from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout)
            self._producer = None


@dataclass
class SlackSink(Sink):
    url: str = ""

    def payload(self, delivery: Delivery) -> dict[str, Any]:
        incident = delivery.incident
        short = incident["incident_id"][:12]
        if delivery.change == "updated":
            growth = incident.get("growth", {})
            grew = ", ".join(f"+{count} {name}" for name, count in growth.items() if count) or "new evidence"
            return {
                "text": f"incident {short} grew: {grew} ({len(incident['account_ids'])} accounts, "
                f"risk {incident['risk_score']})"
            }
        prefix = {
            "opened": "",
            "escalated": f"Escalated from {incident.get('previous_severity')}: ",
            "acknowledged": f"Acknowledged by {delivery.by}: ",
            "resolved": f"Resolved by {delivery.by}: ",
        }
        text = prefix[delivery.change] + incident_headline(incident)
        accounts = ", ".join(_first_accounts(incident))
        more = len(incident["account_ids"]) - ACCOUNTS_IN_NOTIFICATION
        entities = ", ".join(f"{e['type']} {e['id']}" for e in incident["entities"][:10])
        fields = [
            f"*Severity*\n{incident['severity']}",
            f"*Risk*\n{incident['risk_score']}",
            f"*Detections*\n{', '.join(incident['detection_ids'])}",
            f"*Infrastructure*\n{entities or '-'}",
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": incident["summary"][:3000]}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": value[:2000]} for value in fields]},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Accounts ({len(incident['account_ids'])})*: {accounts or '-'}"
                    + (f" and {more} more" if more > 0 else ""),
                },
            },
        ]
        if delivery.note:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*Note*: {delivery.note}"[:3000]}}
            )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"incident `{incident['incident_id']}` | {incident['runbook']}"[:2000],
                    }
                ],
            }
        )
        return {"text": text, "blocks": blocks}

    def send(self, delivery: Delivery) -> None:
        _post_json(self.url, self.payload(delivery), self.timeout)


@dataclass
class PagerDutySink(Sink):
    routing_key: str = ""
    url: str = PAGERDUTY_URL

    def payload(self, delivery: Delivery) -> dict[str, Any]:
        incident = delivery.incident
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": ACTION_OF_CHANGE[delivery.change],
            # One dedup_key per incident: updates fold into it, acknowledge/resolve address it.
            "dedup_key": incident["dedup_key"],
        }
        if event["event_action"] == "trigger":
            event["client"] = "usagewatch"
            event["payload"] = {
                "summary": incident_headline(incident)[:PAGERDUTY_SUMMARY_MAX],
                "source": "usagewatch",
                "severity": PAGERDUTY_SEVERITY[incident["severity"]],
                "timestamp": incident["updated_at"],
                "component": "incident",
                "group": ",".join(incident["detection_ids"]),
                "class": incident["change"],
                "custom_details": {
                    "incident_id": incident["incident_id"],
                    "change": incident["change"],
                    "summary": incident["summary"],
                    "risk_score": incident["risk_score"],
                    "account_count": len(incident["account_ids"]),
                    "accounts": _first_accounts(incident),
                    "entities": incident["entities"],
                    "evidence": incident["evidence"],
                    "runbook": incident["runbook"],
                },
            }
        return event

    def send(self, delivery: Delivery) -> None:
        _post_json(self.url, self.payload(delivery), self.timeout)


@dataclass
class AlertmanagerSink(Sink):
    """Alertmanager's receiving API: POST /api/v2/alerts with an array of alerts.

    Labels identify the alert, so they are the same on every post of one incident (alertname,
    incident_id, severity) and Alertmanager groups them; an escalation posts the old severity resolved
    and the new one firing. Resolve = endsAt now.
    """

    url: str = ""
    generator_url: str = ""

    def payload(self, delivery: Delivery) -> list[dict[str, Any]]:
        incident = delivery.incident
        now = dt.datetime.now(dt.UTC)

        def alert(severity: str, ends_at: dt.datetime) -> dict[str, Any]:
            body = {
                "labels": {
                    "alertname": ALERTMANAGER_ALERTNAME,
                    "incident_id": incident["incident_id"],
                    "severity": severity,
                },
                "annotations": {
                    "summary": incident_headline(incident),
                    "description": incident["summary"],
                    "runbook": incident["runbook"],
                    "accounts": ", ".join(_first_accounts(incident)),
                    "account_count": str(len(incident["account_ids"])),
                    "risk_score": str(incident["risk_score"]),
                },
                "startsAt": incident["first_seen"],
                "endsAt": _zulu(ends_at),
            }
            if self.generator_url:
                body["generatorURL"] = self.generator_url + incident["incident_id"]
            return body

        if delivery.change == "resolved":
            return [alert(incident["severity"], now)]
        alerts = [alert(incident["severity"], now + ALERTMANAGER_FIRING_HOLD)]
        if delivery.change == "escalated" and incident.get("previous_severity"):
            alerts.insert(0, alert(incident["previous_severity"], now))
        return alerts

    def send(self, delivery: Delivery) -> None:
        _post_json(self.url, self.payload(delivery), self.timeout)


# --- configuration --------------------------------------------------------------------------------

_SINK_KEYS = {
    "stdout": set(),
    "jsonl": {"path"},
    "kafka": {"topic", "bootstrap"},
    "slack": {"webhook_url_env"},
    "pagerduty": {"routing_key_env", "url"},
    "alertmanager": {"url_env", "url", "generator_url"},
}
_COMMON_SINK_KEYS = {"name", "type", "min_severity"}
_ROUTING_KEYS = {"sinks", "retry", "timeout_seconds"}
_RETRY_KEYS = {"attempts", "backoff_seconds", "max_backoff_seconds"}


def _secret(config: Config, where: str, spec: dict[str, Any], key: str) -> str:
    variable = spec.get(key)
    if not isinstance(variable, str) or not variable:
        raise config.error("routing", f"{where}: '{key}' must name an environment variable")
    value = os.environ.get(variable)
    if not value:
        raise RoutingError(f"{config.path}: {where}: environment variable {variable} ({key}) is not set")
    register_secret(value)
    return value


def _http_url(config: Config, where: str, url: str, secret: bool = False) -> str:
    # A URL read from the environment may carry a token (Slack, webhooks): never echo it; a literal one
    # is named by its scheme and host only.
    shown = "the URL from the environment" if secret else redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise config.error("routing", f"{where}: {shown} has an invalid host or port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config.error("routing", f"{where}: {shown} is not an http(s) URL")
    return url


def _build_sink(config: Config, index: int, spec: Any, timeout: float) -> Sink:
    if not isinstance(spec, dict):
        raise config.error("routing", f"routing.sinks[{index}] must be a mapping")
    kind = spec.get("type")
    if kind not in _SINK_KEYS:
        raise config.error("routing", f"routing.sinks[{index}]: type must be one of {', '.join(_SINK_KEYS)}")
    name = spec.get("name", kind)
    where = f"routing sink {name!r} (sinks[{index}])"
    unknown = set(spec) - _COMMON_SINK_KEYS - _SINK_KEYS[kind]
    if unknown:
        raise config.error("routing", f"{where}: unknown key(s) {sorted(unknown)} for type {kind}")
    if not isinstance(name, str) or not name:
        raise config.error("routing", f"routing.sinks[{index}]: name must be a non-empty string")
    min_severity = spec.get("min_severity", "info")
    if min_severity not in SEVERITIES:
        raise config.error("routing", f"{where}: min_severity must be one of {', '.join(SEVERITIES)}")
    common = {"name": name, "min_severity": min_severity, "timeout": timeout}
    if kind == "stdout":
        return StdoutSink(**common)
    if kind == "jsonl":
        if not isinstance(spec.get("path"), str):
            raise config.error("routing", f"{where}: jsonl needs 'path'")
        return JsonlSink(**common, path=config.resolve(spec["path"]))
    if kind == "kafka":
        from pipelines.infra import kafka_broker  # the broker module pulls in the Kafka admin client

        return KafkaSink(
            **common,
            topic=str(spec.get("topic", kafka_broker.ALERTS_TOPIC)),
            bootstrap=str(spec.get("bootstrap") or kafka_broker.bootstrap_servers()),
        )
    if kind == "slack":
        url = _http_url(config, where, _secret(config, where, spec, "webhook_url_env"), secret=True)
        return SlackSink(**common, url=url)
    if kind == "pagerduty":
        routing_key = _secret(config, where, spec, "routing_key_env")
        url = _http_url(config, where, str(spec.get("url", PAGERDUTY_URL)))
        return PagerDutySink(**common, routing_key=routing_key, url=url)
    # alertmanager: a URL may carry a token, so only a local receiver may be written into the file
    if ("url" in spec) == ("url_env" in spec):
        raise config.error("routing", f"{where}: alertmanager needs exactly one of 'url_env' or 'url'")
    if "url" in spec:
        url = _http_url(config, where, str(spec["url"]))
        if urllib.parse.urlsplit(url).hostname not in LOCAL_HOSTS:
            raise config.error(
                "routing", f"{where}: a literal 'url' must be local; use url_env for {redact_url(url)}"
            )
    else:
        url = _http_url(config, where, _secret(config, where, spec, "url_env"), secret=True)
    generator_url = spec.get("generator_url", "")
    if not isinstance(generator_url, str):
        raise config.error(
            "routing", f"{where}: generator_url must be a URL prefix (the incident id is appended)"
        )
    # Alertmanager's alert model has no acknowledgement.
    changes = frozenset(CHANGES) - {"acknowledged"}
    return AlertmanagerSink(**common, changes=changes, url=url, generator_url=generator_url)


# Beyond these a setting is a typo or an attack (`attempts: 1e9` retries for ever), not a choice.
_NUMBER_MAXIMUMS = {
    "routing.timeout_seconds": 300,
    "routing.retry.attempts": 100,
    "routing.retry.backoff_seconds": 3600,
    "routing.retry.max_backoff_seconds": 86400,
}


def _number(config: Config, where: str, value: Any, minimum: float) -> float:
    """A finite number in range, or a ConfigError at the key's own line."""
    return float(config.check_number(value, minimum, _NUMBER_MAXIMUMS[where], *where.split(".")))


def load_router(config: Config) -> Router:
    """Build the sinks of `routing:`; raise ConfigError (file:line) or RoutingError (missing secret)."""
    section = config.section("routing", _ROUTING_KEYS)
    timeout = _number(config, "routing.timeout_seconds", section.get("timeout_seconds", 10), 0.01)
    retry_spec = section.get("retry") or {}
    if not isinstance(retry_spec, dict) or set(retry_spec) - _RETRY_KEYS:
        raise config.error("routing", f"routing.retry must be a mapping of {sorted(_RETRY_KEYS)}", "retry")
    defaults = RetryPolicy()

    def retry_number(key: str, minimum: float) -> float:
        return _number(config, f"routing.retry.{key}", retry_spec.get(key, getattr(defaults, key)), minimum)

    attempts = retry_number("attempts", 1)
    if attempts != int(attempts):
        raise config.error("routing", "routing.retry.attempts must be a whole number", "retry", "attempts")
    retry = RetryPolicy(
        attempts=int(attempts),
        backoff_seconds=retry_number("backoff_seconds", 0),
        max_backoff_seconds=retry_number("max_backoff_seconds", 0),
    )
    specs = section.get("sinks") or []
    if not isinstance(specs, list):
        raise config.error("routing", "routing.sinks must be a list")
    sinks = [_build_sink(config, index, spec, timeout) for index, spec in enumerate(specs)]
    names = [sink.name for sink in sinks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise config.error("routing", f"routing sink names must be unique; give 'name' to: {duplicates}")
    return Router(sinks, retry)


# --- delivery -------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: list[str] = field(default_factory=list)  # "sink: error" per notification that failed this run
    pending: int = 0  # still in the outbox after this run

    def describe(self) -> str:
        text = f"{self.delivered} notification(s) delivered, {self.pending} pending in the outbox"
        return text + "".join(f"\n  failed: {failure}" for failure in self.failed)


class Router:
    def __init__(self, sinks: list[Sink], retry: RetryPolicy):
        self.sinks = {sink.name: sink for sink in sinks}
        self.retry = retry

    def trigger_sinks(self, severity: str) -> list[str]:
        """Sinks a page (an incident opened or escalated) of this severity goes to."""
        return [name for name, sink in self.sinks.items() if sink.accepts(severity)]

    def follow_up_sinks(self, paged: list[str], change: str) -> list[str]:
        """Of the sinks an incident paged, those that understand `change`."""
        return [name for name in paged if name in self.sinks and change in self.sinks[name].changes]

    @staticmethod
    def action_of(change: str) -> str:
        return ACTION_OF_CHANGE[change]

    def deliver(
        self, store: AlertStore, now: dt.datetime, incident_ids: list[str] | None = None, sleep=time.sleep
    ) -> DeliveryReport:
        """Deliver every due outbox row; a failure leaves the row for a later run (with backoff)."""
        report = DeliveryReport()
        # After one exhausted notification a sink is skipped for the rest of the run: this spares the
        # retries of every other one, and keeps an incident's acknowledge from overtaking its trigger.
        unreachable: set[str] = set()
        try:
            for delivery in store.due_deliveries(now, incident_ids):
                sink = self.sinks.get(delivery.sink)
                if sink is None:
                    report.failed.append(
                        f"{delivery.sink}: no longer configured (incident {delivery.incident_id})"
                    )
                    continue
                if delivery.sink in unreachable:
                    continue
                tries, error = self._send_with_retries(sink, delivery, sleep)
                attempts = delivery.attempts + tries
                if error is None:
                    report.delivered += 1
                    store.mark_delivered(delivery, attempts, now)
                else:
                    next_attempt = now + dt.timedelta(seconds=self.retry.delay(attempts))
                    store.mark_failed(delivery, attempts, error, next_attempt)
                    report.failed.append(f"{delivery.sink}: {error}")
                    unreachable.add(delivery.sink)
        finally:
            for sink in self.sinks.values():
                sink.close()
        report.pending = store.pending_deliveries()
        return report

    def _send_with_retries(self, sink: Sink, delivery: Delivery, sleep) -> tuple[int, str | None]:
        """(tries made, None on success or the last error)."""
        error_text = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                sink.send(delivery)
                return attempt, None
            except (DeliveryError, OSError, ValueError) as error:
                # Stored in the outbox, shown by `incidents show`, printed: never with a secret in it.
                error_text = redact(error)
                logger.warning(
                    f"routing: {sink.name} attempt {attempt}/{self.retry.attempts} failed: {error_text}",
                    extra={"fields": {"sink": sink.name, "attempt": attempt}},
                )
                if attempt < self.retry.attempts:
                    sleep(self.retry.delay(attempt))
        return self.retry.attempts, error_text
