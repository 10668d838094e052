"""`usagewatch evaluate`: scoring, label parsing, and the catalogue's acceptance on the generated corpus."""

from __future__ import annotations

import argparse
import csv
from datetime import UTC, datetime, timedelta

import pytest

from pipelines import evaluate
from pipelines.detections import DETECTIONS_DIR
from pipelines.generator import GeneratorConfig, generate_records, write_jsonl, write_labels


def _alert(severity: str, accounts: list[str], detection_id: str = "x") -> dict:
    return {"severity": severity, "account_ids": accounts, "detection_id": detection_id}


def test_score_counts_only_alerts_of_medium_or_above():
    labels = [
        evaluate.Label("r1", "ring", "hydra"),
        evaluate.Label("r2", "ring", "hydra"),
        evaluate.Label("b1", "individual", "benign"),
        evaluate.Label("b2", "individual", "benign"),
    ]
    results = {
        r.name: r for r in evaluate.score(labels, [_alert("high", ["r1", "b1"]), _alert("info", ["r2"])])
    }
    assert results["hydra"].rate == 0.5 and results["hydra"].missed_or_flagged == ["r2"]
    assert results["individual"].rate == 0.5 and results["individual"].missed_or_flagged == ["b1"]


def test_read_labels_rejects_a_wrong_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("account,group\nx,y\n")
    with pytest.raises(
        ValueError, match=r"labels\.csv:1: header must be account_id,group,scenario_or_benign"
    ):
        evaluate.read_labels(path)


def test_command_refuses_missing_files(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--events", str(tmp_path / "none.jsonl"), "--labels", "x.csv"])
    assert args.func(args) == 2
    assert "file not found" in capsys.readouterr().err


@pytest.mark.integration
def test_catalogue_meets_acceptance_on_the_generated_corpus(tmp_path, capsys):
    """Every scenario and trap, replayed through the real Flink job, then every detection."""
    config = GeneratorConfig(
        seed=7, start=datetime(2026, 11, 27, 8, tzinfo=UTC), duration=timedelta(minutes=30)
    )
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.csv"
    write_jsonl(generate_records(config), events)
    write_labels(config, labels)

    report, alerts = evaluate.evaluate(events, labels)

    groups = {(group["kind"], group["name"]): group for group in report["groups"]}
    assert {name for kind, name in groups if kind == "scenario"} == set(config.scenarios)
    for (kind, name), group in groups.items():
        if kind == "scenario":
            assert group["rate"] >= 0.95, (
                f"{name} recall {group['rate']}: missed {group['missed_or_flagged']}"
            )
    benign = [group for (kind, _), group in groups.items() if kind == "benign"]
    assert sum(g["named"] for g in benign) <= 0.01 * sum(g["accounts"] for g in benign)
    assert report["alerts_by_detection"].keys() >= {path.stem for path in DETECTIONS_DIR.glob("*.yml")}

    # The ring alert names (nearly) the whole hydra in one alert.
    hydra = {
        row["account_id"] for row in csv.DictReader(labels.open()) if row["scenario_or_benign"] == "hydra"
    }
    rings = [alert for alert in alerts if alert["detection_id"] == "ring_clustering"]
    best = max(len(hydra & set(alert["account_ids"])) for alert in rings)
    assert best >= 0.95 * len(hydra)
