"""`quality:` in usagewatch.yml: where validation results and reports (with the incident pages) go.

Its own module because routing links the incident pages under reports_dir, and gates.py routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.infra.config import Config

QUALITY_KEYS = {"results_dir", "reports_dir"}
DEFAULT_RESULTS_DIR = ".run/quality"  # relative to the configuration file
DEFAULT_REPORTS_DIR = ".run/reports"


@dataclass(frozen=True)
class QualitySettings:
    results_dir: Path
    reports_dir: Path


def quality_settings(config: Config) -> QualitySettings:
    section = config.section("quality", QUALITY_KEYS)
    values = {}
    for key, default in (("results_dir", DEFAULT_RESULTS_DIR), ("reports_dir", DEFAULT_REPORTS_DIR)):
        value = section.get(key, default)
        if not isinstance(value, str) or not value:
            raise config.error("quality", f"quality.{key} must be a directory path", key)
        values[key] = config.resolve(value)
    return QualitySettings(**values)
