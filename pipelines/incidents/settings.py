"""The `incidents:` section of usagewatch.yml (window, thresholds, severity tiers) and what a detection
declares about its signals (suppression, risk cap, whether they link accounts)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pipelines.incidents.alert_state import (
    severity_rank,
)
from pipelines.infra import clock
from pipelines.infra.config import Config


@dataclass(frozen=True)
class IncidentSettings:
    window: dt.timedelta = dt.timedelta(hours=24)
    link_min_risk: int = 20
    open_threshold: int = 100
    same_detection_share: float = 0.25
    # (severity, minimum risk), most severe first
    severity_tiers: tuple[tuple[str, int], ...] = (("critical", 200), ("high", 150), ("medium", 100))

    def tier(self, risk: float) -> str | None:
        return next((severity for severity, minimum in self.severity_tiers if risk >= minimum), None)


_SETTINGS_KEYS = {"window", "link_min_risk", "open_threshold", "same_detection_share", "severity_tiers"}


def incident_settings(config: Config) -> IncidentSettings:
    """The `incidents:` section, validated; a problem names the file and line."""
    section = config.section("incidents", _SETTINGS_KEYS)
    defaults = IncidentSettings()

    def number(key: str, low: float, high: float, whole: bool) -> Any:
        value = section.get(key, getattr(defaults, key))
        return config.check_number(value, low, high, "incidents", key, whole=whole)

    try:
        window = clock.parse_duration(section["window"]) if "window" in section else defaults.window
    except ValueError as error:
        raise config.error("incidents", f"incidents.window: {error}", "window") from None
    tiers = section.get("severity_tiers", dict(defaults.severity_tiers))
    if not isinstance(tiers, dict) or set(tiers) - {"low", "medium", "high", "critical"}:
        raise config.error(
            "incidents",
            "incidents.severity_tiers must map low/medium/high/critical to risks",
            "severity_tiers",
        )
    for severity, minimum in tiers.items():
        config.check_number(minimum, 1, 10_000, "incidents", "severity_tiers", severity, whole=True)
    ordered = sorted(tiers.items(), key=lambda item: severity_rank(item[0]), reverse=True)
    if [minimum for _, minimum in ordered] != sorted(tiers.values(), reverse=True):
        raise config.error("incidents", "incidents.severity_tiers must rise with severity", "severity_tiers")
    return IncidentSettings(
        window=window,
        link_min_risk=int(number("link_min_risk", 0, 100, whole=True)),
        open_threshold=int(number("open_threshold", 1, 10_000, whole=True)),
        same_detection_share=float(number("same_detection_share", 0, 1, whole=False)),
        severity_tiers=tuple((severity, int(minimum)) for severity, minimum in ordered),
    )


@dataclass(frozen=True)
class SignalPolicy:
    """What a producer declares about its detection's signals."""

    suppression_minutes: int
    max_contribution: int
    links_accounts: bool
