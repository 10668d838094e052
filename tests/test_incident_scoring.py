"""Scoring on incidents: recall per campaign kind, benign false positives, pages, time to detect."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.detect.incident_scoring import Label, Page, read_labels, score_incidents

T0 = dt.datetime(2026, 11, 27, 8, tzinfo=dt.UTC)

LABELS = [
    Label("h1", "hydra-1", "hydra"),
    Label("h2", "hydra-1", "hydra"),
    Label("h3", "hydra-2", "hydra"),
    Label("x1", "lone-1", "lone_extractor"),
    *(Label(f"b{i}", "mobile_cgnat", "benign") for i in range(6)),
    *(Label(f"c{i}", "individual", "benign") for i in range(4)),
]


def _incident(incident_id: str, accounts: list[str], severity: str = "high") -> dict:
    return {"incident_id": incident_id, "severity": severity, "account_ids": accounts}


def _by_name(card) -> dict:
    return {score.name: score for score in card.kinds}


def test_recall_false_positives_and_pages_per_campaign():
    card = score_incidents(
        LABELS,
        [
            _incident("i1", ["h1", "h2"]),
            _incident("i2", ["h3", "b0"]),  # a page about hydra-2 that also names a benign account
            _incident("i3", ["h1"]),  # a second page for hydra-1
            _incident("i4", ["x1"], severity="low"),  # below the page floor: not caught, not a page
            _incident("i5", ["c1"]),  # a page nobody needed
        ],
        days=0.25,
    )
    kinds = _by_name(card)
    assert kinds["hydra"].rate == 1.0 and kinds["hydra"].campaigns == 2 and kinds["hydra"].pages == 3
    assert kinds["hydra"].pages_per_campaign == 1.5
    assert kinds["lone_extractor"].rate == 0.0 and kinds["lone_extractor"].missed_or_flagged == ["x1"]
    assert kinds["mobile_cgnat"].missed_or_flagged == ["b0"]
    assert kinds["individual"].missed_or_flagged == ["c1"]
    assert card.pages == 4 and card.benign_pages == 1
    assert card.benign_named_rate == pytest.approx(2 / 10)
    # 1 benign page over 10 benign accounts in a quarter of a day = 400 per thousand per day.
    assert card.benign_pages_per_thousand_per_day == pytest.approx(400)


def test_an_incident_without_accounts_is_no_benign_page():
    card = score_incidents(LABELS, [_incident("dq", [], severity="medium")], days=1)
    assert card.pages == 1 and card.benign_pages == 0


def test_time_to_detect_is_first_page_minus_first_request_per_instance():
    card = score_incidents(
        LABELS,
        [_incident("i1", ["h1"]), _incident("i2", ["h2"]), _incident("i3", ["h3"])],
        days=0.25,
        first_request={"hydra-1": T0, "hydra-2": T0 + dt.timedelta(minutes=30)},
        pages_over_time=[
            Page(T0 + dt.timedelta(minutes=20), ("h1",)),
            Page(T0 + dt.timedelta(minutes=10), ("h2",)),  # the earlier page of hydra-1 counts
            Page(T0 + dt.timedelta(minutes=45), ("h3",)),
        ],
    )
    hydra = _by_name(card)["hydra"]
    assert sorted(hydra.time_to_detect_minutes) == [10.0, 15.0]
    summary = next(kind for kind in card.to_json()["kinds"] if kind["name"] == "hydra")
    assert summary["time_to_detect_minutes"] == {"median": 12.5, "worst": 15.0}


def test_read_labels_rejects_a_wrong_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("account,group\nx,y\n")
    with pytest.raises(ValueError, match=r"labels\.csv:1: header must be account_id,group,scenario_or"):
        read_labels(path)
