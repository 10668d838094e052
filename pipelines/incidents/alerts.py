"""Turn detection result rows into alerts of the contract in schemas/alert.schema.json."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from pipelines.infra.rendering import terminal_safe, to_json_value
from pipelines.stream.contracts import format_event_time, validate_alert

SEVERITIES = ("info", "low", "medium", "high", "critical")  # ascending urgency, as in the alert schema

# Columns every detection returns; everything else in a row is evidence.
REQUIRED_RESULT_COLUMNS = ("entity_id", "account_ids", "window_start", "window_end")
SEVERITY_OVERRIDE_COLUMN = "severity"
# Optional columns: a row's own risk (0-100, evidence-weighted; else the YAML's risk.score) and whether
# it must open an incident at once (e.g. restricted-region access that was served).
RISK_SCORE_COLUMN = "risk_score"
IMMEDIATE_COLUMN = "immediate"

DEDUP_KEY_MAX_LENGTH = 255  # PagerDuty's limit, enforced by the alert schema


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive datetimes are UTC (the lake's convention); aware ones are converted."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def suppression_bucket(window_start: dt.datetime, suppression_minutes: int) -> dt.datetime:
    """Start of the suppression period window_start falls in (periods aligned to the Unix epoch)."""
    period = suppression_minutes * 60
    seconds = int(_utc(window_start).timestamp())
    return dt.datetime.fromtimestamp(seconds - seconds % period, tz=dt.UTC)


def _dedup_text(value: Any) -> str:
    rendered = to_json_value(value)
    return ",".join(map(str, rendered)) if isinstance(rendered, list) else str(rendered)


def dedup_key(detection_id: str, dedup_values: list[Any]) -> str:
    key = f"{detection_id}:" + "|".join(_dedup_text(value) for value in dedup_values)
    if len(key) > DEDUP_KEY_MAX_LENGTH:
        # Long keys (e.g. a list of accounts) keep their identity as a hash instead of being cut.
        key = f"{detection_id}:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def alert_id(key: str, window_start: dt.datetime, suppression_minutes: int) -> str:
    """Same finding in the same suppression period -> same id, on every re-run."""
    bucket = format_event_time(suppression_bucket(window_start, suppression_minutes))
    return hashlib.sha256(f"{key}@{bucket}".encode()).hexdigest()[:32]


def render_runbook(runbook: dict[str, str]) -> str:
    return f"Investigate: {runbook['investigate'].strip()} Respond: {runbook['respond'].strip()}"


def build_alert(detection, row: dict[str, Any], created_at: dt.datetime) -> dict[str, Any]:
    """One alert from one result row of `detection` (a pipelines.detect.detections.Detection); validated."""
    severity = row.get(SEVERITY_OVERRIDE_COLUMN) or detection.severity
    key = dedup_key(detection.id, [row[column] for column in detection.dedup_keys])
    reserved = {*REQUIRED_RESULT_COLUMNS, SEVERITY_OVERRIDE_COLUMN, RISK_SCORE_COLUMN, IMMEDIATE_COLUMN}
    risk = row.get(RISK_SCORE_COLUMN)
    alert = {
        "alert_id": alert_id(key, row["window_start"], detection.suppression_minutes),
        "detection_id": detection.id,
        "title": detection.title,
        "severity": severity,
        "entity_type": detection.entity_type,
        "entity_id": str(row["entity_id"]),
        "account_ids": sorted({str(account) for account in row["account_ids"] or [] if account is not None}),
        "window_start": format_event_time(_utc(row["window_start"])),
        "window_end": format_event_time(_utc(row["window_end"])),
        "evidence": {name: to_json_value(value) for name, value in row.items() if name not in reserved},
        "runbook": render_runbook(detection.runbook),
        "dedup_key": key,
        "created_at": format_event_time(_utc(created_at)),
        "risk_score": int(round(risk)) if risk is not None else detection.risk["score"],
        "immediate": bool(row.get(IMMEDIATE_COLUMN) or False),
        "techniques": {framework: list(ids) for framework, ids in detection.techniques.items()},
    }
    validate_alert(alert)
    return alert


def fold_duplicates(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep one alert per alert_id: the most severe, then the earliest (rows arrive in window order)."""
    kept: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        current = kept.get(alert["alert_id"])
        if current is None or SEVERITIES.index(alert["severity"]) > SEVERITIES.index(current["severity"]):
            kept[alert["alert_id"]] = alert
    return list(kept.values())


def headline(alert: dict[str, Any]) -> str:
    """One line per alert for terminals and chat; the entity comes from event data, so it is escaped."""
    accounts = len(alert["account_ids"])
    return terminal_safe(
        f"[{alert['severity'].upper()}] {alert['title']}: {alert['entity_type']} {alert['entity_id']} "
        f"({accounts} account{'s' if accounts != 1 else ''}) "
        f"{alert['window_start']} .. {alert['window_end']}"
    )
