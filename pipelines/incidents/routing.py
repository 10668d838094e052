"""Incident routing: the sinks of usagewatch.yml `routing:` built and checked, and delivery through the
state outbox (the sinks themselves, by their vendors' contracts: pipelines/incidents/sinks.py).

Only incidents (schemas/incident.schema.json, made by pipelines/incidents/engine.py) are routed; signals
never are. Every notification is first written to the outbox (pipelines/incidents/alert_state.py), then
delivered; what a sink did not accept stays in the outbox and is retried on a later run, so an
unreachable sink never loses a notification. Secrets (webhook URLs, routing keys) come only from
environment variables named by `*_env` keys, checked when the configuration is loaded.

Every routed copy carries `incident_page`, the link to its incident page (pipelines/reports/
incident_page.py): `routing.incident_page_base_url` + the page's file name, or the file:// URL of the
page under the reports directory. PagerDuty gets it in `links`, Alertmanager as `generatorURL`, Slack as
a button.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.exports import SIEM_FORMATS
from pipelines.incidents.alerts import SEVERITIES
from pipelines.incidents.sinks import (
    ACTION_OF_CHANGE,
    CHANGES,
    LOCAL_HOSTS,
    PAGERDUTY_URL,
    AlertmanagerSink,
    DeliveryError,
    JsonlSink,
    KafkaSink,
    PagerDutySink,
    RetryPolicy,
    RoutingError,
    Sink,
    SlackSink,
    StdoutSink,
)
from pipelines.infra.config import Config
from pipelines.infra.redaction import redact, redact_url, register_secret
from pipelines.quality.settings import quality_settings

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the store is handed in by the caller; only the types are needed here
    from pipelines.incidents.alert_state import AlertStore

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
