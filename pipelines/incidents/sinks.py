"""The sinks: how an incident's routed copy reaches PagerDuty, Alertmanager, Slack, Kafka, a JSONL file or
stdout, each by its vendor's contract (pipelines/incidents/routing.py builds them from `routing:` and
delivers through the outbox).

HTTP sinks retry through urllib3's `Retry`: network errors, 5xx and 429 only, waiting what `Retry-After`
asks or else an exponential backoff with jitter; any other 4xx is the receiver rejecting the notification,
which the same request will not change, so it waits in the outbox (with its error) instead.

Changes: `opened` and `escalated` page (PagerDuty trigger, Slack message, Alertmanager alert);
`updated` (the incident grew) goes quietly to the sinks it already paged: PagerDuty gets a trigger with
the same dedup_key, which it folds into the open incident; Slack one short line; Alertmanager the same
labels again. `acknowledged` / `resolved` follow to the sinks that understand them. stdout, jsonl and
kafka carry the incident document with `change`; jsonl and kafka with `format: ocsf` or `format: ecs`
carry it as a SIEM ingests it (pipelines/exports).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.util import Retry

from pipelines.exports import siem_document
from pipelines.incidents.alerts import SEVERITIES
from pipelines.incidents.audit import last_line
from pipelines.infra.redaction import redact
from pipelines.infra.rendering import terminal_safe

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the store is handed in by the caller; only the types are needed here
    from pipelines.incidents.alert_state import Delivery


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
