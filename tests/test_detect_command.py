"""`usagewatch detect`: incidents and signals as JSONL, state across runs, --since/--until, and --every."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lakefixture import FIXTURE_FILE_NAME, read_jsonl, write_events

from pipelines.commands import cli
from pipelines.detect.detections import DETECTIONS_DIR, run_incrementally
from pipelines.incidents.alert_state import AlertStore
from pipelines.infra.config import load_config
from pipelines.infra.paths import REPO_ROOT
from pipelines.stream.contracts import validate_alert, validate_incident

TRAVEL_EVENTS = read_jsonl(DETECTIONS_DIR / "impossible_travel" / "positive.jsonl")
DEADLINE_SECONDS = 60


def events_of(account: str) -> list[dict]:
    return [event for event in TRAVEL_EVENTS if event["account_id"] == account]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "usagewatch.yml"
    path.write_text(
        "state:\n  path: state/state.duckdb\n  audit_log: state/audit.jsonl\n"
        "routing:\n  sinks:\n    - {name: file, type: jsonl, path: routed.jsonl}\n"
        # every travel signal its own incident, whatever the detection's risk is tuned to
        "incidents:\n  open_threshold: 1\n"
    )
    return path


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def detect(tmp_path: Path, *extra: str) -> int:
    return cli.main(
        ["detect", "--lake", str(tmp_path / "lake"), "--config", str(write_config(tmp_path)), *extra]
    )


def test_output_lists_new_or_changed_incidents_and_signals_lists_every_signal(tmp_path, capsys):
    write_events(tmp_path / "lake", TRAVEL_EVENTS)
    output, signals = tmp_path / "out" / "incidents.jsonl", tmp_path / "out" / "signals.jsonl"

    assert detect(tmp_path, "--output", str(output), "--signals", str(signals)) == 0
    opened, first_signals = read_jsonl(output), read_jsonl(signals)
    printed = capsys.readouterr().out
    assert "signals: 2 new, 0 suppressed, 0 already known; incidents: 2 opened" in printed
    assert printed.count("PAGE [") == 2  # one line per page

    assert detect(tmp_path, "--output", str(output), "--signals", str(signals)) == 0
    printed = capsys.readouterr().out

    for incident in opened:
        validate_incident(incident)
        assert incident["change"] == "opened"
    assert sorted(i["account_ids"][0] for i in opened) == ["acct-hopper", "acct-simultaneous"]
    assert read_jsonl(output) == []  # nothing new or changed on the second run
    second_signals = read_jsonl(signals)
    for document in second_signals:
        validate_alert(document)
    assert [s["alert_id"] for s in first_signals] == [s["alert_id"] for s in second_signals]
    assert "signals: 0 new, 0 suppressed, 2 already known; incidents: 0 opened" in printed
    assert "PAGE [" not in printed
    assert "0 new or changed incident(s) written to" in printed and "2 signal(s) written to" in printed
    assert len(read_jsonl(tmp_path / "routed.jsonl")) == 2  # routed once, not per run


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2026-03-01T09:00Z", "2026-03-01T10:45Z", ["acct-hopper"]),
        ("2026-03-01T10:45:00+00:00", None, ["acct-simultaneous"]),
        (None, "2026-03-01", []),
        ("2026-03-01", "2026-03-02", ["acct-hopper", "acct-simultaneous"]),
    ],
)
def test_since_and_until_restrict_the_data(tmp_path, since, until, expected):
    write_events(tmp_path / "lake", TRAVEL_EVENTS)
    output = tmp_path / "signals.jsonl"
    bounds = [*(["--since", since] if since else []), *(["--until", until] if until else [])]

    assert detect(tmp_path, "--detection", "impossible_travel", "--signals", str(output), *bounds) == 0

    assert sorted(alert["entity_id"] for alert in read_jsonl(output)) == expected


def test_unknown_detection_and_missing_lake_are_errors(tmp_path, capsys):
    write_events(tmp_path / "lake", TRAVEL_EVENTS)
    assert detect(tmp_path, "--detection", "no_such_rule") == 2  # a bad argument
    assert "unknown detection(s) ['no_such_rule']" in capsys.readouterr().err
    assert cli.main(["detect", "--lake", str(tmp_path / "missing")]) == 2


def add_lake_file(tmp_path: Path, events: list[dict], name: str) -> Path:
    """Commit events as a new part file (written aside first, so the loop never sees it half-written)."""
    (written,) = write_events(tmp_path / "staging", events)
    target = tmp_path / "lake" / written.relative_to(tmp_path / "staging")
    target.parent.mkdir(parents=True, exist_ok=True)
    return written.rename(target.with_name(name))


def test_every_detects_new_files_and_partitions_incrementally(tmp_path):
    hopper = events_of("acct-hopper")
    add_lake_file(tmp_path, hopper[:1], FIXTURE_FILE_NAME)  # one request: nothing to detect yet
    config = load_config(str(write_config(tmp_path)))
    output, signals = tmp_path / "loop.jsonl", tmp_path / "loop-signals.jsonl"
    stop = threading.Event()
    cycles: list[str] = []
    collector = logging.Handler()
    collector.emit = lambda record: cycles.append(record.getMessage())
    detections_logger = logging.getLogger("pipelines.detect.detections")
    detections_logger.addHandler(collector)
    detections_logger.setLevel(logging.INFO)
    loop = threading.Thread(
        target=run_incrementally,
        args=(tmp_path / "lake", config, dt.timedelta(seconds=0.05), dt.timedelta(hours=24), stop),
        kwargs={
            "only": ["impossible_travel"],
            "output": output,
            "signals_output": signals,
        },
    )
    loop.start()
    try:

        def entities() -> list[str]:
            return sorted(i["account_ids"][0] for i in read_jsonl(output)) if output.exists() else []

        wait_until(lambda: any("1 new lake file(s)" in line for line in cycles), "the first cycle")
        assert entities() == []

        add_lake_file(tmp_path, hopper[1:], "part-fixture-1")  # a new file in the open partition hr=10
        wait_until(lambda: entities() == ["acct-hopper"], "the hopper alert")

        add_lake_file(tmp_path, events_of("acct-simultaneous"), FIXTURE_FILE_NAME)  # new partition hr=11
        wait_until(lambda: entities() == ["acct-hopper", "acct-simultaneous"], "the second alert")

        (tmp_path / "lake" / "events" / "dt=2026-03-01" / "hr=10" / "_SUCCESS").touch()

        def completed() -> set[str]:
            with AlertStore.open(tmp_path / "state" / "state.duckdb") as store:
                return store.completed_partitions()

        wait_until(lambda: "events/dt=2026-03-01/hr=10" in completed(), "the committed partition")
    finally:
        stop.set()
        loop.join(timeout=DEADLINE_SECONDS)
        detections_logger.removeHandler(collector)
        detections_logger.setLevel(logging.NOTSET)
    assert not loop.is_alive()
    assert len(read_jsonl(output)) == 2  # each incident once, though the hopper was re-run with hr=11
    assert len(read_jsonl(signals)) == 2  # each signal once
    assert len(read_jsonl(tmp_path / "routed.jsonl")) == 2
    assert "events/dt=2026-03-01/hr=11" not in completed()  # no _SUCCESS yet: still open


def test_every_stops_cleanly_on_sigterm(tmp_path):
    write_events(tmp_path / "lake", TRAVEL_EVENTS)
    command = [
        sys.executable, "-m", "pipelines.commands.cli", "detect", "--lake", str(tmp_path / "lake"),
        "--config", str(write_config(tmp_path)), "--every", "0.2s", "--detection", "impossible_travel",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout))
    reader.start()
    try:
        wait_until(lambda: any("new lake file(s)" in line for line in output), "the first cycle")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(timeout=DEADLINE_SECONDS)
    # A service's log: every line a JSON object with its level and logger, cycles with their counts.
    logged = [record for record in map(json.loads, output) if "logger" in record]  # stdout sink: incidents
    assert {"ts", "level", "logger", "message"} <= set(logged[0])
    cycles = [line for line in logged if "new lake file(s)" in line["message"]]
    assert cycles[0]["new_files"] >= 1 and cycles[0]["signals"] == 2
    assert "signals: 2 new" in cycles[0]["message"]
    messages = [line["message"] for line in logged]
    assert "SIGTERM: stopping after the current cycle" in messages
    assert any(re.fullmatch(r"stopped after \d+ cycle\(s\)", message) for message in messages)
