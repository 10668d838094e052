"""Backtest detections *and* incidents on a labelled event file (`usagewatch evaluate`, the sweep).

The events become a lake — through the real aggregation job (a bounded replay, the production code
path) or, with `--engine duckdb`, through the batch builder that `tests/test_batch_lake.py` proves
equal to the job — unless `--lake` names one already filled from that file. Then `detect` runs as in
production, into a scratch state: every detection, the incident engine, no sinks. With `--every 5m` it
runs as `detect --every` would, once per five minutes of event time over the data that had arrived by
then, so each page has the event time at which on-call would have received it.

Scored on incidents (pipelines/detect/incident_scoring.py): recall per campaign kind, false positives per
benign class, pages per campaign, benign pages per 1,000 accounts per day, time to detect.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.detect.detections import detect_and_route
from pipelines.detect.incident_scoring import (
    PAGE_SEVERITY,
    CorpusError,
    Label,
    Page,
    Scorecard,
    read_labels,
    score_incidents,
)
from pipelines.incidents.alert_state import AlertStore, state_path
from pipelines.infra.config import Config, load_config
from pipelines.lake.analyst import open_lake

ENGINES = ("flink", "duckdb")


def build_lake(events_path: Path, lake_dir: Path, engine: str) -> None:
    """The lake of these events: the real job's bounded replay, or the batch builder proven equal to it."""
    if engine == "duckdb":
        from pipelines.lake.batch_lake import build_lake as build_batch_lake

        build_batch_lake(events_path, lake_dir)
        return
    from pipelines.stream.flink_job import run_job

    code = run_job(["--source", "file", "--input", str(events_path.resolve()), "--lake", str(lake_dir)])
    if code != 0:
        raise RuntimeError(f"replay of {events_path} failed with exit code {code}")


def scratch_config(directory: Path) -> Config:
    """A configuration whose state, audit log and outbox live in `directory`, with no sinks: an
    evaluation must never page anyone."""
    path = directory / "usagewatch.yml"
    path.write_text(
        "state:\n  path: state.duckdb\n  audit_log: audit.jsonl\nrouting:\n  sinks: []\n", encoding="utf-8"
    )
    return load_config(str(path))


def _event_time_span(lake_dir: Path) -> tuple[dt.datetime, dt.datetime]:
    con = open_lake(lake_dir, read_only=True)
    try:
        first, last = con.execute("select min(event_time), max(event_time) from events").fetchone()
    finally:
        con.close()
    if first is None:
        raise CorpusError(f"lake {lake_dir} holds no events")
    return first.replace(tzinfo=dt.UTC), last.replace(tzinfo=dt.UTC)


def first_requests(lake_dir: Path, labels: list[Label]) -> dict[str, dt.datetime]:
    """Campaign instance -> event time of its first request."""
    campaign_of = {label.account_id: label.group for label in labels if not label.is_benign}
    con = open_lake(lake_dir, read_only=True)
    try:
        rows = con.execute("select account_id, min(event_time) from events group by account_id").fetchall()
    finally:
        con.close()
    first: dict[str, dt.datetime] = {}
    for account, moment in rows:
        campaign = campaign_of.get(account)
        if campaign is not None:
            moment = moment.replace(tzinfo=dt.UTC)
            first[campaign] = min(first.get(campaign, moment), moment)
    return first


@dataclass
class DetectReplay:
    incidents: list[dict[str, Any]]  # the final incidents
    pages: list[Page]  # every page, with its cycle's event time
    signals: list[dict[str, Any]]  # every signal recorded new, over all cycles
    cycles: int


def run_detect(lake_dir: Path, config: Config, every: dt.timedelta | None) -> DetectReplay:
    """Detect once over the whole lake, or once per `every` of event time over what had arrived."""
    first, last = _event_time_span(lake_dir)
    if every is None:
        cutoffs = [last + dt.timedelta(minutes=1)]
    else:
        cutoffs, cutoff = [], first + every
        while cutoff < last + every:
            cutoffs.append(cutoff)
            cutoff += every
    pages: list[Page] = []
    signals: list[dict[str, Any]] = []
    for cutoff in cutoffs:
        # A backtest notifies nobody: no incident pages to write, cycle after cycle.
        run = detect_and_route(
            lake_dir, config, until=cutoff if every else None, now=cutoff, incident_pages=False
        )
        signals += run.engine.recorded.new
        pages += [Page(cutoff, tuple(change["account_ids"])) for change in run.engine.pages]
    with AlertStore.open(state_path(config)) as store:
        incidents = [record["incident"] for record in store.list_incidents()]
    return DetectReplay(incidents, pages, signals, len(cutoffs))


def evaluate(
    events_path: Path,
    labels_path: Path,
    lake_dir: Path | None = None,
    engine: str = "flink",
    every: dt.timedelta | None = None,
) -> tuple[Scorecard, Scorecard, dict[str, Any], list[dict[str, Any]]]:
    """Build the lake (unless given), detect, score. Returns (incident scorecard, signal scorecard,
    JSON-ready report, incidents)."""
    labels = read_labels(labels_path)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="usagewatch-evaluate-") as scratch:
        if lake_dir is None:
            lake_dir = Path(scratch) / "lake"
            started = time.perf_counter()
            build_lake(events_path, lake_dir, engine)
            timings["lake_seconds"] = round(time.perf_counter() - started, 2)
        config = scratch_config(Path(scratch))
        started = time.perf_counter()
        replay = run_detect(lake_dir, config, every)
        timings["detect_seconds"] = round(time.perf_counter() - started, 2)
        first, last = _event_time_span(lake_dir)
        days = (last - first).total_seconds() / 86400
        card = score_incidents(
            labels,
            replay.incidents,
            days,
            first_request=first_requests(lake_dir, labels) if every else None,
            pages_over_time=replay.pages,
        )
        # The detections' own view, as before incidents: who a signal >= medium named. One probe of one
        # behaviour (the classic scenarios) shows up here even where it would not page by itself.
        signal_card = score_incidents(labels, replay.signals, days)
    report = {
        "events": str(events_path),
        "labels": str(labels_path),
        "page_severity": PAGE_SEVERITY,
        "detect_every": str(every) if every else None,
        "detect_cycles": replay.cycles,
        "incidents": len(replay.incidents),
        # what on-call's phone did: every opened or escalated incident of every cycle (pages counts each
        # incident once, as the acceptance does; escalations re-page)
        "page_notifications": len(replay.pages),
        "signals_by_detection": dict(sorted(Counter(s["detection_id"] for s in replay.signals).items())),
        **timings,
        **card.to_json(),
        "named_by_signals": {kind.name: kind.named for kind in signal_card.kinds},
    }
    return card, signal_card, report, replay.incidents
