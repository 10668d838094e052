"""`usagewatch schedule`: cron jobs from the configuration, run by APScheduler as usagewatch processes."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import time
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from pipelines.commands import cli, schedule
from pipelines.infra import paths
from pipelines.infra.config import ConfigError, load_config

MONDAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
SUNDAY_AFTER = dt.datetime(2026, 12, 6, 1, tzinfo=dt.UTC)


def _config(directory: Path, jobs: str) -> Path:
    path = directory / "usagewatch.yml"
    path.write_text(f"lake:\n  path: lake\nschedule:\n  log_dir: logs\n  jobs:\n{jobs}")
    return path


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        # crontab weekdays count from Sunday = 0 (APScheduler 3 from Monday = 0): 1 must be Monday
        ("0 1 * * 1", MONDAY - dt.timedelta(days=1), MONDAY.replace(hour=1)),
        ("0 1 * * 0", MONDAY, SUNDAY_AFTER),
        ("0 1 * * 7", MONDAY, SUNDAY_AFTER),  # 7 is Sunday too
        ("0 9 * * 1-5", MONDAY.replace(hour=10), dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)),  # next weekday
        ("30 0 * * *", MONDAY, MONDAY.replace(minute=30)),
        ("*/15 * * * * *", MONDAY, MONDAY.replace(second=15)),  # 6 fields: seconds first
    ],
)
def test_cron_expressions_mean_what_crontab_means(cron, after, expected):
    job = schedule.ScheduledJob("job", cron, ["validate"])
    assert schedule.next_fire_times(job, after, count=1) == [expected]


def test_the_shipped_configuration_and_crontab_schedule_the_same_jobs():
    jobs = schedule.load_jobs(load_config(paths.REPO_ROOT / "usagewatch.yml"))
    assert {job.name for job in jobs} == {"detect", "validate", "daily-report", "weekly-report"}
    crontab = (paths.REPO_ROOT / "docker" / "cron" / "usagewatch.crontab").read_text()
    entries = set()
    for line in crontab.splitlines():
        match = re.match(r"^([^#A-Z\s]\S*(?:\s+\S+){4})\s.*?\.venv/bin/usagewatch (.*?) >>", line)
        if match:
            entries.add((match.group(1), tuple(shlex.split(match.group(2)))))
    assert entries == {(job.cron, tuple(job.argv)) for job in jobs}
    for job in jobs:
        assert (paths.REPO_ROOT / "docker" / "systemd" / f"usagewatch-{job.name}.timer").is_file()


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ('    - {name: a, cron: "61 * * * *", command: validate}\n', "invalid cron"),
        ('    - {name: a, cron: "* * *", command: validate}\n', "has 3 fields"),
        ('    - {name: a, cron: "* * * * *", command: rm -rf /}\n', "command must start with one of"),
        ('    - {name: a, cron: "* * * * *", command: schedule}\n', "command must start with one of"),
        ('    - {name: a, cron: "* * * * *", command: validate}\n' * 2, "unique"),
        ('    - {name: a, cron: "* * * * *"}\n', "exactly name, cron and command"),
    ],
)
def test_a_bad_job_fails_fast_naming_the_file_and_line(tmp_path, jobs, message):
    config = load_config(str(_config(tmp_path, jobs)))
    line = 3 if message == "unique" else 6  # a bad job is named at its own line, not the section's
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:{line}: .*{message}"):
        schedule.load_jobs(config)


def test_the_scheduler_runs_a_job_as_a_usagewatch_command(tmp_path):
    (tmp_path / "lake" / "events").mkdir(parents=True)  # a young lake: `usagewatch sql` refuses a non-lake
    # Every second, so the test waits about one second; the relative --lake resolves beside the config.
    config = load_config(
        str(
            _config(
                tmp_path,
                '    - {name: probe, cron: "* * * * * *", '
                'command: sql --lake lake "select 6 * 7 as answer"}\n',
            )
        )
    )
    jobs = schedule.load_jobs(config)
    scheduler = schedule.build_scheduler(config, jobs, BackgroundScheduler(timezone=dt.UTC))
    log = tmp_path / "logs" / "probe.log"
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "--- exit 0" in log.read_text()):
            assert time.monotonic() < deadline, (
                f"the job did not finish in time; log: {log.read_text() if log.exists() else 'none'}"
            )
            time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    text = log.read_text()
    assert "usagewatch sql --lake lake 'select 6 * 7 as answer'" in text
    assert re.search(r"^42\s*$", text, re.MULTILINE)


def test_run_once_returns_the_jobs_exit_code(tmp_path, capsys):
    config = _config(
        tmp_path, '    - {name: broken, cron: "0 0 * * *", command: sql --lake missing "select 1"}\n'
    )
    assert (
        schedule.run_schedule_command(_args(config, run="broken")) == 2
    )  # `usagewatch sql` on a missing lake
    assert "lake directory missing does not exist" in (tmp_path / "logs" / "broken.log").read_text()
    assert cli.main(["schedule", "--config", str(config), "--run", "nope"]) == 2
    assert "no scheduled job 'nope'" in capsys.readouterr().err


def _args(config: Path, run: str | None = None, list_jobs: bool = False):
    import argparse

    return argparse.Namespace(config=str(config), run=run, list=list_jobs)
