"""`usagewatch evaluate`: backtest the detection catalogue on a labelled event file.

The events go through the real aggregation job (a bounded replay, the same code path as production)
into a temporary lake, or `--lake` names one that is already filled from that file. Then every enabled
detection runs once, and each labelled account counts as *named* when it appears in `account_ids` of
an alert of severity >= medium (info/low are context, not something on-call acts on).

Reported per attack scenario: recall (share of its accounts named). Per benign group: false-positive
rate (share of its accounts named).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.alerts import SEVERITIES
from pipelines.analyst import format_table, open_lake
from pipelines.detections import DetectionError, run_detections
from pipelines.flink_job import run_job
from pipelines.generator import BENIGN, LABEL_COLUMNS

MIN_ACTIONABLE_SEVERITY = "medium"


@dataclass(frozen=True)
class Label:
    account_id: str
    group: str
    scenario_or_benign: str


@dataclass(frozen=True)
class GroupResult:
    kind: str  # "scenario" (rate = recall) or "benign" (rate = false-positive rate)
    name: str
    accounts: int
    named: int
    missed_or_flagged: list[str]  # scenario: accounts missed; benign: accounts wrongly named

    @property
    def rate(self) -> float:
        return self.named / self.accounts if self.accounts else 0.0


def read_labels(path: Path) -> list[Label]:
    """The ground-truth CSV written by `usagewatch generate --labels`; a clear error on a bad file."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != LABEL_COLUMNS:
            raise ValueError(f"{path}:1: header must be {','.join(LABEL_COLUMNS)}, got {reader.fieldnames}")
        labels = []
        for line, row in enumerate(reader, start=2):
            if not all(row.get(column) for column in LABEL_COLUMNS):
                raise ValueError(f"{path}:{line}: every column needs a value, got {row}")
            labels.append(Label(row["account_id"], row["group"], row["scenario_or_benign"]))
    if len({label.account_id for label in labels}) != len(labels):
        raise ValueError(f"{path}: an account_id appears more than once")
    return labels


def named_accounts(alerts: list[dict[str, Any]], min_severity: str = MIN_ACTIONABLE_SEVERITY) -> set[str]:
    floor = SEVERITIES.index(min_severity)
    return {
        account
        for alert in alerts
        if SEVERITIES.index(alert["severity"]) >= floor
        for account in alert["account_ids"]
    }


def score(labels: list[Label], alerts: list[dict[str, Any]]) -> list[GroupResult]:
    """Recall per scenario (by scenario name), false-positive rate per benign group (by group name)."""
    named = named_accounts(alerts)
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    for label in labels:
        if label.scenario_or_benign == BENIGN:
            members[("benign", label.group)].append(label.account_id)
        else:
            members[("scenario", label.scenario_or_benign)].append(label.account_id)
    results = []
    for (kind, name), accounts in sorted(members.items()):
        hits = [account for account in accounts if account in named]
        # For a scenario the interesting accounts are the ones missed; for benign, the ones flagged.
        notable = sorted(set(accounts) - set(hits)) if kind == "scenario" else sorted(hits)
        results.append(GroupResult(kind, name, len(accounts), len(hits), notable))
    return results


def replay_into(events_path: Path, lake_dir: Path) -> None:
    """Run the real aggregation job bounded over the file (what `usagewatch replay` does)."""
    code = run_job(["--source", "file", "--input", str(events_path.resolve()), "--lake", str(lake_dir)])
    if code != 0:
        raise RuntimeError(f"replay of {events_path} failed with exit code {code}")


def detect(lake_dir: Path) -> list[dict[str, Any]]:
    con = open_lake(lake_dir, read_only=True)
    try:
        return run_detections(con)
    finally:
        con.close()


def evaluate(
    events_path: Path, labels_path: Path, lake_dir: Path | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Replay (unless lake_dir is given), detect, score. Returns (JSON-ready report, the alerts)."""
    labels = read_labels(labels_path)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="usagewatch-evaluate-") as scratch:
        if lake_dir is None:
            lake_dir = Path(scratch) / "lake"
            started = time.perf_counter()
            replay_into(events_path, lake_dir)
            timings["replay_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        alerts = detect(lake_dir)
        timings["detect_seconds"] = round(time.perf_counter() - started, 2)
    results = score(labels, alerts)
    report = {
        "events": str(events_path),
        "labels": str(labels_path),
        "min_severity": MIN_ACTIONABLE_SEVERITY,
        "alerts": len(alerts),
        "alerts_by_detection": dict(sorted(_count_by_detection(alerts).items())),
        **timings,
        "groups": [{**asdict(result), "rate": round(result.rate, 4)} for result in results],
    }
    return report, alerts


def _count_by_detection(alerts: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for alert in alerts:
        counts[alert["detection_id"]] += 1
    return counts


def render_report(report: dict[str, Any]) -> str:
    rows = [
        (
            group["kind"],
            group["name"],
            group["accounts"],
            group["named"],
            ("recall " if group["kind"] == "scenario" else "false-positive rate ") + f"{group['rate']:.1%}",
        )
        for group in report["groups"]
    ]
    table = format_table(["kind", "group", "accounts", f"named (>= {report['min_severity']})", "rate"], rows)
    timings = ", ".join(
        f"{name.removesuffix('_seconds')} {report[name]:.1f} s"
        for name in ("replay_seconds", "detect_seconds")
        if name in report
    )
    return f"{table}\n{report['alerts']} alert(s); {timings}"


def run_evaluate_command(args: argparse.Namespace) -> int:
    events_path, labels_path = Path(args.events), Path(args.labels)
    for path in (events_path, labels_path):
        if not path.is_file():
            print(f"evaluate: file not found: {path}", file=sys.stderr)
            return 2
    lake_dir = Path(args.lake) if args.lake else None
    if lake_dir is not None and not lake_dir.is_dir():
        print(f"evaluate: lake directory {lake_dir} does not exist", file=sys.stderr)
        return 2
    try:
        report, _ = evaluate(events_path, labels_path, lake_dir)
    except (ValueError, RuntimeError, DetectionError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else render_report(report))
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="backtest the detections on a labelled event file (recall, false-positive rate)",
        description="Replay a labelled JSONL file through the aggregation job into a temporary lake (or "
        "use --lake), run every enabled detection, and print recall per attack scenario and the "
        f"false-positive rate per benign group, counting alerts of severity >= {MIN_ACTIONABLE_SEVERITY}.",
    )
    parser.add_argument("--events", required=True, help="JSONL file of access events")
    parser.add_argument("--labels", required=True, help="CSV: " + ",".join(LABEL_COLUMNS))
    parser.add_argument("--lake", help="an already filled lake of these events (skips the replay)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run_evaluate_command)
