"""Indicator sharing between two providers on field traffic: what provider A's confirmed incidents export,
what B's shared_indicator_match makes of them, and what it costs.

A: six hours of field traffic (seed_a), every detection, every incident naming accounts acknowledged and
exported as a STIX bundle (with A's lake, so exclusive user agents go too). B: six hours of other field
traffic (seed_b: its own benign population and campaigns) plus A's campaign traffic replayed under B's own
account ids (`peer-` + id): the same operators using B. B imports every bundle into a fresh state, then runs
shared_indicator_match alone. Printed: indicators by kind; A's campaign accounts at B named (all kinds, and
per campaign kind); B's benign accounts named and B's own campaign accounts named (a false link, unless the
two seeds' campaigns share infrastructure); the detection's time over B's lake with and without imports.

    python -m bench.indicator_sharing [--seed-a 11] [--seed-b 12] [--accounts 450] [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.detect_run import bench_config
from pipelines.detect.detections import detect_and_route
from pipelines.exports import export
from pipelines.incidents.alert_state import AlertStateError, AlertStore
from pipelines.incidents.audit import open_audit_log
from pipelines.incidents.engine import change_status
from pipelines.incidents.routing import load_router
from pipelines.infra.config import load_config
from pipelines.lake.batch_lake import build_lake
from pipelines.traffic.field_traffic import FieldConfig, field_labels, field_records

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
PEER_PREFIX = "peer-"
BENIGN = "benign"


def _events(config: FieldConfig) -> list[bytes]:
    return [record.value for record in field_records(config)]


def run(work: Path, seed_a: int, seed_b: int, accounts: int) -> dict:
    a_config = FieldConfig(seed=seed_a, start=START, benign_accounts=accounts)
    b_config = FieldConfig(seed=seed_b, start=START, benign_accounts=accounts)
    a_labels = {row["account_id"]: row for row in field_labels(a_config)}
    b_labels = {row["account_id"]: row for row in field_labels(b_config)}

    # Provider A: its lake, every detection, every incident naming accounts acknowledged and exported.
    a_events = _events(a_config)
    (work / "a.jsonl").write_bytes(b"\n".join(a_events) + b"\n")
    build_lake(work / "a.jsonl", work / "a-lake")
    a_yml = bench_config(work / "a")
    config = load_config(str(a_yml))
    detect_and_route(work / "a-lake", config, now=NOW)
    bundles, kinds = [], Counter()
    started = time.perf_counter()
    with AlertStore.open(work / "a" / "state.duckdb") as store:
        router = load_router(config)
        for record in store.list_incidents(status="open"):
            incident = record["incident"]
            if not incident["account_ids"]:
                continue
            change_status(store, router, open_audit_log(config), incident["incident_id"], "acknowledged",
                          "bench", None, NOW)  # fmt: skip
            try:
                text = export.incident_stix(
                    store, config, incident["incident_id"], "Provider A", "amber", NOW, work / "a-lake"
                )
            except AlertStateError as error:  # nothing shareable (no infrastructure, card or client)
                print(f"  not exported: {incident['incident_id'][:12]}: {error}")
                continue
            path = work / "bundles" / f"{incident['incident_id']}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            bundles.append(path)
            for item in json.loads(text)["objects"]:
                if item["type"] == "indicator":
                    kinds[item["labels"][0].removeprefix("usagewatch-")] += 1
    export_s = time.perf_counter() - started

    # Provider B: its own traffic plus A's campaigns under B's account ids.
    campaign_lines = []
    for line in a_events:
        event = json.loads(line)
        if a_labels[event["account_id"]]["scenario_or_benign"] != BENIGN:
            event["account_id"] = PEER_PREFIX + event["account_id"]
            campaign_lines.append(json.dumps(event).encode())
    (work / "b.jsonl").write_bytes(b"\n".join(_events(b_config) + campaign_lines) + b"\n")
    built = build_lake(work / "b.jsonl", work / "b-lake")

    def detect_b(folder: str) -> tuple[float, list[dict]]:
        b_yml = work / folder / "usagewatch.yml"
        started = time.perf_counter()
        result = detect_and_route(
            work / "b-lake", load_config(str(b_yml)), only="shared_indicator_match", now=NOW
        )
        return time.perf_counter() - started, result.signals

    bench_config(work / "b-empty")
    empty_s, empty_signals = detect_b("b-empty")
    bench_config(work / "b")
    started = time.perf_counter()
    loaded = sum(
        export.import_indicators(work / "b" / "state.duckdb", path, NOW)["loaded"] for path in bundles
    )
    import_s = time.perf_counter() - started
    shared_s, signals = detect_b("b")

    named = {account for signal in signals for account in signal["account_ids"]}
    injected = defaultdict(set)
    for account, row in a_labels.items():
        if row["scenario_or_benign"] != BENIGN:
            injected[row["scenario_or_benign"]].add(PEER_PREFIX + account)
    b_benign = {a for a, row in b_labels.items() if row["scenario_or_benign"] == BENIGN}
    b_campaign = set(b_labels) - b_benign
    per_kind = {
        kind: f"{len(accounts_ & named)}/{len(accounts_)}" for kind, accounts_ in sorted(injected.items())
    }
    all_injected = set().union(*injected.values())
    return {
        "events_b": built.events,
        "bundles": len(bundles),
        "indicators": dict(kinds),
        "indicators_loaded": loaded,
        "export_s": round(export_s, 2),
        "import_s": round(import_s, 2),
        "signals": len(signals),
        "immediate_signals": sum(signal["immediate"] for signal in signals),
        "a_campaign_accounts_named_at_b": f"{len(all_injected & named)}/{len(all_injected)}",
        "per_campaign_kind": per_kind,
        "b_benign_named": f"{len(b_benign & named)}/{len(b_benign)}",
        "b_own_campaign_named": f"{len(b_campaign & named)}/{len(b_campaign)}",
        "detect_s_without_imports": round(empty_s, 2),
        "signals_without_imports": len(empty_signals),
        "detect_s_with_imports": round(shared_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-a", type=int, default=11)
    parser.add_argument("--seed-b", type=int, default=12)
    parser.add_argument("--accounts", type=int, default=450, help="benign accounts per provider")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="usagewatch-sharing-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(json.dumps(run(work, args.seed_a, args.seed_b, args.accounts), indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
