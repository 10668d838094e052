"""Incident routing: the sinks of usagewatch.yml `routing:` and delivery through the state outbox.

Only incidents (schemas/incident.schema.json, made by pipelines/incidents/engine.py) are routed; signals
never are. Every notification is first written to the outbox (pipelines/incidents/alert_state.py), then
delivered; what a sink did not accept stays in the outbox and is retried on a later run, so an
unreachable sink never loses a notification. Within a run, HTTP sinks retry through urllib3's `Retry`:
network errors, 5xx and 429 only, waiting what `Retry-After` asks or else an exponential backoff with
jitter; any other 4xx is the receiver rejecting the notification, which the same request will not
change, so it waits in the outbox (with its error) instead. Secrets (webhook URLs, routing keys) come
only from environment variables named by `*_env` keys, checked when the configuration is loaded.

Every routed copy carries `incident_page`, the link to its incident page (pipelines/reports/
incident_page.py): `routing.incident_page_base_url` + the page's file name, or the file:// URL of the
page under the reports directory. PagerDuty gets it in `links`, Alertmanager as `generatorURL`, Slack as
a button.

Changes: `opened` and `escalated` page (PagerDuty trigger, Slack message, Alertmanager alert);
`updated` (the incident grew) goes quietly to the sinks it already paged: PagerDuty gets a trigger with
the same dedup_key, which it folds into the open incident; Slack one short line; Alertmanager the same
labels again. `acknowledged` / `resolved` (from `usagewatch incidents ack|resolve`, or a merge) follow to
the sinks that understand them. stdout, jsonl and kafka carry the incident document with `change`; jsonl
and kafka with `format: ocsf` or `format: ecs` carry it as a SIEM ingests it (pipelines/exports).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util import Retry

from pipelines.exports import SIEM_FORMATS, siem_document
from pipelines.incidents.alerts import SEVERITIES
from pipelines.incidents.audit import last_line
from pipelines.infra.config import Config
from pipelines.infra.redaction import redact, redact_url, register_secret
from pipelines.infra.rendering import terminal_safe
from pipelines.quality.settings import quality_settings

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
    """A sink did not accept a notification after `tries` tries; `retry_after`: seconds the receiver
    asked to wait before the next one (its Retry-After header), if it said."""

    def __init__(self, message: str, tries: int = 1, retry_after: float | None = None):
        super().__init__(message)
        self.tries = tries
        self.retry_after = retry_after


# What a retry can cure: the receiver failing (5xx) or asking us to slow down (429). Another 4xx says
# this notification is wrong for this receiver (bad payload, bad key, wrong URL): sending it again
# within the run changes nothing.
RETRYABLE_STATUSES = frozenset({429, *range(500, 600)})
_LONGEST_RETRY_AFTER = 86400  # a day: beyond it a Retry-After is an error of the receiver's, not a plan


class _DeliveryRetry(Retry):
    """urllib3's Retry with the policy's schedule: the first retry already waits (urllib3 retries at
    once), and the wait is jittered over its upper half so that many runs failing together do not retry
    together. Retry-After is honoured on every retryable status (urllib3 only on 413, 429 and 503), and
    never shortened: an ask longer than the policy's longest wait ends the run's tries, and the outbox
    keeps the notification until then (urllib3 would cap the wait and retry early)."""

    RETRY_AFTER_STATUS_CODES = RETRYABLE_STATUSES

    def get_retry_after(self, response) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:  # a malformed ask falls back to the backoff
            return None

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        asked = self.get_retry_after(response) if response is not None else None
        if asked is not None and asked > self.backoff_max:
            raise MaxRetryError(_pool, url, f"Retry-After {asked:.0f} s is longer than this run waits")
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_backoff_time(self) -> float:
        if not self.history:
            return 0.0
        ceiling = min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries per notification within one run
    backoff_seconds: float = 1.0  # wait after the first failure; doubles after each further one
    max_backoff_seconds: float = 60.0  # cap, also for the delay until a later run tries again

    def delay(self, failures: int) -> float:
        return min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(failures - 1, 0))

    def http_retry(self) -> Retry:
        return _DeliveryRetry(
            total=self.attempts - 1,
            status_forcelist=RETRYABLE_STATUSES,
            allowed_methods=None,  # POST too: PagerDuty and Alertmanager fold repeats by key and labels
            backoff_factor=self.backoff_seconds,
            backoff_max=self.max_backoff_seconds,
            retry_after_max=_LONGEST_RETRY_AFTER,
            redirect=False,  # a receiver that redirects is misconfigured; never resend a secret elsewhere
            raise_on_status=False,  # the last response is the error to report
        )


def _post_json(url: str, body: Any, timeout: float, retry: RetryPolicy) -> int:
    """POST `body` with `retry`; return the tries made. A failure is a DeliveryError whose text names the
    receiver without its secrets.

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
    receiver = host  # named without its userinfo, path or query: those may be the secret
    try:
        with urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout)) as http:
            response = http.request(
                "POST", url, body=json.dumps(body).encode("utf-8"), headers=headers,
                retries=retry.http_retry(), preload_content=True,
            )  # fmt: skip
    except MaxRetryError as error:
        raise DeliveryError(
            redact(f"cannot reach {receiver}: {error.reason}"), tries=retry.attempts
        ) from None
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:  # ValueError: a malformed URL
        raise DeliveryError(redact(f"cannot reach {receiver}: {error}")) from None
    tries = len(response.retries.history) + 1 if response.retries else 1
    if 200 <= response.status < 300:
        return tries
    detail = response.data[:300].decode("utf-8", "replace")
    retryable = response.status in RETRYABLE_STATUSES
    verdict = f"gave up after {tries} tries" if retryable else "rejected, not retried"
    # The next run waits as long as the receiver asked.
    retry_after = (
        _DeliveryRetry(retry_after_max=_LONGEST_RETRY_AFTER).get_retry_after(response) if retryable else None
    )
    raise DeliveryError(
        redact(f"HTTP {response.status} from {receiver} ({verdict}): {detail}"), tries, retry_after
    )


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
    retry: RetryPolicy = RetryPolicy()

    def accepts(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)

    def send(self, delivery: Delivery) -> int:
        """Deliver one notification; return the tries it took, or raise DeliveryError."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections opened by send (the Kafka producer)."""


@dataclass
class StdoutSink(Sink):
    def send(self, delivery: Delivery) -> int:
        print(json.dumps(delivery.incident, sort_keys=True), flush=True)
        return 1


def _document(delivery: Delivery, document_format: str | None) -> dict[str, Any]:
    """The routed copy as the sink's `format` says: ours, or a SIEM's (OCSF, ECS)."""
    return siem_document(delivery.incident, document_format) if document_format else delivery.incident


@dataclass
class JsonlSink(Sink):
    path: Path = Path()
    document_format: str | None = None

    def send(self, delivery: Delivery) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_document(delivery, self.document_format), sort_keys=True)
        with self.path.open("a+b") as sink:
            # A run killed after this write and before the outbox marked it delivered sends it again:
            # the line is already the file's last one, so it is not written twice.
            if last_line(sink) == line.encode("utf-8"):
                return 1
            sink.write((line + "\n").encode("utf-8"))
        return 1


@dataclass
class KafkaSink(Sink):
    topic: str = ""
    bootstrap: str = ""
    document_format: str | None = None
    _producer: Any = field(default=None, repr=False)

    def send(self, delivery: Delivery) -> int:
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
                value=json.dumps(_document(delivery, self.document_format), sort_keys=True).encode("utf-8"),
            )
            future.get(timeout=3 * self.timeout)  # the producer retries by itself until then
        except KafkaError as error:
            self.close()  # a fresh producer next time, rather than one stuck on a dead broker
            raise DeliveryError(redact(f"kafka {self.bootstrap} topic {self.topic}: {error!r}")) from None
        return 1

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout)
            self._producer = None


def slack_escape(text: str) -> str:
    """Text safe in Slack mrkdwn: Slack reads `<!channel>`, `<@U123>` and `<url|label>` as mentions and
    links, so &, < and > in data (notes, account ids, titles, evidence) are sent as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_web_link(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in ("http", "https")


@dataclass
class SlackSink(Sink):
    """Slack incoming webhook: `text` (the notification) and `blocks`; every piece of incident data is
    escaped for mrkdwn (`slack_escape`), the only markup is ours."""

    url: str = ""

    def payload(self, delivery: Delivery) -> dict[str, Any]:
        incident = delivery.incident
        short = incident["incident_id"][:12]
        page = incident["incident_page"]
        if delivery.change == "updated":
            growth = incident.get("growth", {})
            grew = ", ".join(f"+{count} {name}" for name, count in growth.items() if count) or "new evidence"
            text = (
                f"incident {short} grew: {grew} ({len(incident['account_ids'])} accounts, "
                f"risk {incident['risk_score']})"
            )
            return {"text": slack_escape(text) + (f" <{page}|incident page>" if _is_web_link(page) else "")}
        prefix = {
            "opened": "",
            "escalated": f"Escalated from {incident.get('previous_severity')}: ",
            "acknowledged": f"Acknowledged by {delivery.by}: ",
            "resolved": f"Resolved by {delivery.by}: ",
        }
        text = slack_escape(prefix[delivery.change] + incident_headline(incident))
        accounts = slack_escape(", ".join(_first_accounts(incident)))
        more = len(incident["account_ids"]) - ACCOUNTS_IN_NOTIFICATION
        entities = slack_escape(", ".join(f"{e['type']} {e['id']}" for e in incident["entities"][:10]))
        fields = [
            f"*Severity*\n{slack_escape(incident['severity'])}",
            f"*Risk*\n{incident['risk_score']}",
            f"*Detections*\n{slack_escape(', '.join(incident['detection_ids']))}",
            f"*Infrastructure*\n{entities or '-'}",
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(incident["summary"])[:3000]}},
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
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*Note*: {slack_escape(delivery.note)}"[:3000]},
                }
            )
        # Slack opens only web links from a button; a file:// page (no base URL configured) is shown as text
        if _is_web_link(page):
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open incident page"},
                            "url": page,
                        }
                    ],
                }
            )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": slack_escape(
                            f"incident `{incident['incident_id']}` | {incident['runbook']}"
                            + ("" if _is_web_link(page) else f" | page: {page}")
                        )[:2000],
                    }
                ],
            }
        )
        return {"text": text, "blocks": blocks}

    def send(self, delivery: Delivery) -> int:
        return _post_json(self.url, self.payload(delivery), self.timeout, self.retry)


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
            event["links"] = [{"href": incident["incident_page"], "text": "Incident page"}]
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
                    "incident_page": incident["incident_page"],
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

    def send(self, delivery: Delivery) -> int:
        return _post_json(self.url, self.payload(delivery), self.timeout, self.retry)


@dataclass
class AlertmanagerSink(Sink):
    """Alertmanager's receiving API: POST /api/v2/alerts with an array of alerts.

    Labels identify the alert, so they are the same on every post of one incident (alertname,
    incident_id, severity) and Alertmanager groups them; an escalation posts the old severity resolved
    and the new one firing. Resolve = endsAt now. generatorURL is the incident page.
    """

    url: str = ""

    def payload(self, delivery: Delivery) -> list[dict[str, Any]]:
        incident = delivery.incident
        now = dt.datetime.now(dt.UTC)

        def alert(severity: str, ends_at: dt.datetime) -> dict[str, Any]:
            return {
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
                "generatorURL": incident["incident_page"],
            }

        if delivery.change == "resolved":
            return [alert(incident["severity"], now)]
        alerts = [alert(incident["severity"], now + ALERTMANAGER_FIRING_HOLD)]
        if delivery.change == "escalated" and incident.get("previous_severity"):
            alerts.insert(0, alert(incident["previous_severity"], now))
        return alerts

    def send(self, delivery: Delivery) -> int:
        return _post_json(self.url, self.payload(delivery), self.timeout, self.retry)


# --- configuration --------------------------------------------------------------------------------

_SINK_KEYS = {
    "stdout": set(),
    "jsonl": {"path", "format"},
    "kafka": {"topic", "bootstrap", "format"},
    "slack": {"webhook_url_env"},
    "pagerduty": {"routing_key_env", "url"},
    "alertmanager": {"url_env", "url"},
}
_COMMON_SINK_KEYS = {"name", "type", "min_severity"}
_ROUTING_KEYS = {"sinks", "retry", "timeout_seconds", "incident_page_base_url"}
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


def _http_url(config: Config, where: str, url: str, secret: bool = False, key: str | None = None) -> str:
    # A URL read from the environment may carry a token (Slack, webhooks): never echo it; a literal one
    # is named by its scheme and host only.
    shown = "the URL from the environment" if secret else redact_url(url)
    keys = (key,) if key else ()  # the line of a routing-level key; a sink's errors name the sink
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        raise config.error("routing", f"{where}: {shown} has an invalid host or port", *keys) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config.error("routing", f"{where}: {shown} is not an http(s) URL", *keys)
    return url


def _build_sink(config: Config, index: int, spec: Any, timeout: float, retry: RetryPolicy) -> Sink:
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
    common = {"name": name, "min_severity": min_severity, "timeout": timeout, "retry": retry}
    document_format = spec.get("format")
    if document_format is not None and document_format not in SIEM_FORMATS:
        raise config.error(
            "routing", f"{where}: format must be one of {', '.join(SIEM_FORMATS)}", "sinks", index, "format"
        )
    if kind == "stdout":
        return StdoutSink(**common)
    if kind == "jsonl":
        if not isinstance(spec.get("path"), str):
            raise config.error("routing", f"{where}: jsonl needs 'path'")
        return JsonlSink(**common, path=config.resolve(spec["path"]), document_format=document_format)
    if kind == "kafka":
        from pipelines.infra import kafka_broker  # the broker module pulls in the Kafka admin client

        return KafkaSink(
            **common,
            topic=str(spec.get("topic", kafka_broker.ALERTS_TOPIC)),
            bootstrap=str(spec.get("bootstrap") or kafka_broker.bootstrap_servers()),
            document_format=document_format,
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
    # Alertmanager's alert model has no acknowledgement.
    changes = frozenset(CHANGES) - {"acknowledged"}
    return AlertmanagerSink(**common, changes=changes, url=url)


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
    sinks = [_build_sink(config, index, spec, timeout, retry) for index, spec in enumerate(specs)]
    names = [sink.name for sink in sinks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise config.error("routing", f"routing sink names must be unique; give 'name' to: {duplicates}")
    return Router(sinks, retry, incident_page_links(config, section.get("incident_page_base_url")))


PAGES_FOLDER = "incidents"
_INCIDENT_ID = re.compile(r"[0-9A-Za-z_-]+")


def incident_pages_dir(reports_dir: Path) -> Path:
    """Where the incident pages are written (pipelines/reports/incident_page.py), beside the reports."""
    return reports_dir / PAGES_FOLDER


def page_file_name(incident_id: str) -> str:
    """A page's file name, also the last segment of its URL under routing.incident_page_base_url."""
    if not _INCIDENT_ID.fullmatch(incident_id):  # ids are hex digests; anything else is not ours
        raise ValueError(f"not an incident id: {incident_id!r}")
    return f"incident-{incident_id}.html"


def incident_page_links(config: Config, base_url: Any) -> Callable[[str], str]:
    """incident id -> the URL of its page: under `routing.incident_page_base_url` where the pages are
    served, else the file:// URL where detect and `usagewatch report` write them (quality.reports_dir)."""
    if base_url is None:
        directory = incident_pages_dir(quality_settings(config).reports_dir)
        return lambda incident_id: (directory / page_file_name(incident_id)).as_uri()
    if not isinstance(base_url, str):
        raise config.error(
            "routing", "routing.incident_page_base_url must be a URL", "incident_page_base_url"
        )
    where = "routing.incident_page_base_url"
    prefix = _http_url(config, where, base_url, key="incident_page_base_url").rstrip("/") + "/"
    return lambda incident_id: prefix + page_file_name(incident_id)


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
    def __init__(self, sinks: list[Sink], retry: RetryPolicy, page_link: Callable[[str], str]):
        self.sinks = {sink.name: sink for sink in sinks}
        self.retry = retry
        self.page_link = page_link

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
        self, store: AlertStore, now: dt.datetime, incident_ids: list[str] | None = None
    ) -> DeliveryReport:
        """Deliver every due outbox row; a failure leaves the row for a later run (with backoff, or as
        long as the receiver's Retry-After asked)."""
        report = DeliveryReport()
        # After one failed notification a sink is skipped for the rest of the run: this spares the
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
                # The link is made at delivery, so a base URL set later reaches the notifications waiting.
                page = self.page_link(delivery.incident_id)
                linked = dataclasses.replace(delivery, incident={**delivery.incident, "incident_page": page})
                try:
                    tries, error = sink.send(linked), None
                except DeliveryError as failure:
                    tries, error = failure.tries, failure
                except (OSError, ValueError) as failure:  # a local sink: the disk, the file system
                    tries, error = 1, DeliveryError(redact(failure))
                attempts = delivery.attempts + tries
                if error is None:
                    report.delivered += 1
                    store.mark_delivered(delivery, attempts, now)
                    continue
                # Stored in the outbox, shown by `incidents show`, printed: never with a secret in it.
                error_text = redact(error)
                logger.warning(
                    f"routing: {sink.name} failed after {tries} tries: {error_text}",
                    extra={"fields": {"sink": sink.name, "tries": tries}},
                )
                wait = max(self.retry.delay(attempts), error.retry_after or 0)
                store.mark_failed(delivery, attempts, error_text, now + dt.timedelta(seconds=wait))
                report.failed.append(f"{delivery.sink}: {error_text}")
                unreachable.add(delivery.sink)
        finally:
            for sink in self.sinks.values():
                sink.close()
        report.pending = store.pending_deliveries()
        return report
