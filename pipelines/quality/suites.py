"""The data-quality suites: schemas/expectations/<name>.json (Great Expectations 1.x suite JSON), each with
meta.usagewatch naming the lake table it guards, the batch SQL beside it, the severity of its alert and a
description; loaded and checked here, run by gates.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.incidents.alerts import SEVERITIES
from pipelines.infra.paths import SCHEMAS_DIR
from pipelines.lake.layout import TABLES, LakeTable

SUITES_DIR = SCHEMAS_DIR / "expectations"
# `{{ partition <table> }}` or `{{ partition_files <table> }}` inside a suite's batch SQL.
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s+([\w.-]+)\s*\}\}")


class QualityError(ValueError):
    """A suite file or its batch SQL is invalid, or validation could not run; names the file."""


@dataclass(frozen=True)
class Suite:
    name: str
    table: LakeTable
    batch_sql: str
    alert_severity: str
    description: str
    definition: dict[str, Any]  # the GX suite JSON
    path: Path

    def why(self, expectation_type: str, kwargs: dict[str, Any]) -> str:
        """The suite file's explanation of one expectation (matched by type and column)."""
        for expectation in self.definition["expectations"]:
            if expectation["type"] == expectation_type and column_of(expectation["kwargs"]) == column_of(
                kwargs
            ):
                return expectation.get("meta", {}).get("why", "")
        return ""


def column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']} = {kwargs['column_B']}"
    return None


def load_suite(path: Path) -> Suite:
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise QualityError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from error
    if not isinstance(definition, dict) or not isinstance(definition.get("expectations"), list):
        raise QualityError(f"{path}: a suite is a JSON object with an 'expectations' list")
    if definition.get("name") != path.stem:
        raise QualityError(
            f"{path}: suite name {definition.get('name')!r} must equal the file name {path.stem!r}"
        )
    meta = (definition.get("meta") or {}).get("usagewatch")
    if not isinstance(meta, dict) or not {"table", "batch", "alert_severity", "description"} <= set(meta):
        raise QualityError(f"{path}: meta.usagewatch must have table, batch, alert_severity and description")
    tables = {table.name: table for table in TABLES}
    if meta["table"] not in tables:
        raise QualityError(
            f"{path}: meta.usagewatch.table {meta['table']!r} is not a lake table ({sorted(tables)})"
        )
    if meta["alert_severity"] not in SEVERITIES:
        raise QualityError(f"{path}: meta.usagewatch.alert_severity must be one of {', '.join(SEVERITIES)}")
    batch_path = path.parent / meta["batch"]
    if not batch_path.is_file():
        raise QualityError(f"{path}: batch SQL {meta['batch']} is missing")
    for placeholder_kind, name in PLACEHOLDER.findall(batch_path.read_text(encoding="utf-8")):
        if placeholder_kind not in ("partition", "partition_files") or name not in tables:
            raise QualityError(f"{batch_path}: unknown placeholder {{{{ {placeholder_kind} {name} }}}}")
    return Suite(
        name=path.stem,
        table=tables[meta["table"]],
        batch_sql=batch_path.read_text(encoding="utf-8"),
        alert_severity=meta["alert_severity"],
        description=meta["description"],
        definition=definition,
        path=path,
    )


def load_suites(directory: Path = SUITES_DIR) -> list[Suite]:
    suites = [load_suite(path) for path in sorted(directory.glob("*.json"))]
    if not suites:
        raise QualityError(f"{directory}: no expectation suites (*.json)")
    return suites


def gated_tables(suites: Iterable[Suite]) -> list[LakeTable]:
    """Lake tables that have at least one suite, in lake.py order."""
    names = {suite.table.name for suite in suites}
    return [table for table in TABLES if table.name in names]
