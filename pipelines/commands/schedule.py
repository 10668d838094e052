"""`usagewatch schedule`: run detections, validation and reports on the cron expressions of usagewatch.yml.

APScheduler (3.x) does the timing. Each job is a usagewatch command line run as a child process in the
configuration file's folder with that configuration, so a crashing or leaking job never takes the
scheduler down, relative paths mean what they mean in the file, and docker/cron/usagewatch.crontab can
run exactly the same commands. A job still running when its next time comes is not started twice.

    schedule:
      jobs:
        - {name: validate, cron: "10 * * * *", command: validate --only-new}

Cron expressions have the standard 5 fields (minute hour day month weekday, 0 or 7 = Sunday), read in
UTC; a 6th, leading field is seconds.

This module is part of the commands layer, not of reports: a job *is* a usagewatch command line (the
configuration, the crontab and docker share that contract), checked against the command registry and run
through the same entry point, `python -m pipelines.commands.cli`, in a child process so that a crash, a
leak or a slow import (PyFlink, Great Expectations) stays in the job.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.commands.cli import COMMANDS
from pipelines.commands.options import UsageError, add_config
from pipelines.infra.config import Config, load_config

logger = logging.getLogger(__name__)

SCHEDULE_KEYS = {"jobs", "log_dir"}
JOB_KEYS = {"name", "cron", "command"}
DEFAULT_LOG_DIR = ".run/schedule"  # relative to the configuration file
# A job that could not start on time (scheduler busy or paused) still runs if it is at most this late.
MISFIRE_GRACE_SECONDS = 300
_JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str
    argv: list[str]  # usagewatch arguments, e.g. ["report", "--period", "daily"]

    @property
    def command(self) -> str:
        return shlex.join(["usagewatch", *self.argv])


def _cron_weekdays(field: str) -> str:
    """A crontab weekday field in APScheduler's terms.

    APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (7 too), so numbers are
    expanded to day names, which both read the same way.
    """
    if not re.search(r"\d", field):
        return field
    days: list[int] = []
    for part in field.split(","):
        match = re.fullmatch(r"(\*|\d)(?:-(\d))?(?:/(\d+))?", part)
        if not match:
            raise ValueError(f"weekday field {field!r}: use numbers 0-7, ranges (1-5), steps (*/2) or names")
        first, last, step = match.groups()
        low, high = (0, 6) if first == "*" else (int(first), int(last) if last else int(first))
        if first == "*" and last or high > 7 or low > high:
            raise ValueError(f"weekday field {field!r}: {part!r} is not a valid range")
        days += [day % 7 for day in range(low, high + 1, int(step or 1))]
    return ",".join(_WEEKDAY_NAMES[day] for day in sorted(set(days)))


def cron_trigger(expression: str):
    """An APScheduler CronTrigger (UTC) from a 5-field crontab expression, or 6 with leading seconds."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron {expression!r} has {len(fields)} fields; expected 5 (or 6 with seconds first)"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_cron_weekdays(weekday),
        timezone=dt.UTC,
    )


def load_jobs(config: Config) -> list[ScheduledJob]:
    """The schedule section's jobs, checked: valid cron, a known usagewatch command, unique names."""

    section = config.section("schedule", SCHEDULE_KEYS)
    specs = section.get("jobs") or []
    if not isinstance(specs, list) or not specs:
        raise config.error(
            "schedule", "schedule.jobs must be a non-empty list of {name, cron, command}", "jobs"
        )
    jobs = []
    for index, spec in enumerate(specs):
        where = f"schedule.jobs[{index}]"
        if not isinstance(spec, dict) or set(spec) != JOB_KEYS:
            raise config.error("schedule", f"{where} must have exactly name, cron and command", "jobs", index)
        name, cron, command = spec["name"], spec["cron"], spec["command"]
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise config.error(
                "schedule",
                f"{where}.name must be lowercase letters, digits, - or _, got {name!r}",
                "jobs",
                index,
            )
        try:
            cron_trigger(str(cron))
        except ValueError as error:
            raise config.error(
                "schedule", f"{where} ({name}): invalid cron: {error}", "jobs", index
            ) from None
        argv = shlex.split(command) if isinstance(command, str) else []
        if not argv or argv[0] not in COMMANDS or argv[0] == "schedule":
            allowed = ", ".join(known for known in COMMANDS if known != "schedule")
            raise config.error(
                "schedule",
                f"{where} ({name}): command must start with one of {allowed}; got {command!r}",
                "jobs",
                index,
            )
        jobs.append(ScheduledJob(name, str(cron), argv))
    names = [job.name for job in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise config.error("schedule", f"schedule job names must be unique: {duplicates}")
    return jobs


def log_dir(config: Config) -> Path:
    value = config.section("schedule", SCHEDULE_KEYS).get("log_dir", DEFAULT_LOG_DIR)
    if not isinstance(value, str) or not value:
        raise config.error("schedule", "schedule.log_dir must be a directory path", "log_dir")
    return config.resolve(value)


def run_job(job: ScheduledJob, config: Config, logs: Path) -> int:
    """Run one job to completion as a child process; its output is appended to <logs>/<job>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    logger.info(
        f"{job.name}: start {job.command}", extra={"fields": {"job": job.name, "command": job.command}}
    )
    environment = {**os.environ, "USAGEWATCH_CONFIG": str(config.path.resolve())}
    with (logs / f"{job.name}.log").open("a", encoding="utf-8") as log:
        log.write(f"--- {stamp} {job.command}\n")
        log.flush()
        completed = subprocess.run(
            [sys.executable, "-m", "pipelines.commands.cli", *job.argv],
            cwd=config.path.resolve().parent,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
        log.write(f"--- exit {completed.returncode}\n")
    seconds = round(time.monotonic() - started, 1)
    logger.info(
        f"{job.name}: exit {completed.returncode} after {seconds:.1f}s",
        extra={"fields": {"job": job.name, "exit_code": completed.returncode, "seconds": seconds}},
    )
    return completed.returncode


def build_scheduler(config: Config, jobs: list[ScheduledJob], scheduler: Any = None):
    """A (not yet started) APScheduler scheduler with one cron job per scheduled job."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = scheduler or BlockingScheduler(timezone=dt.UTC)
    logs = log_dir(config)
    for job in jobs:
        scheduler.add_job(
            run_job,
            cron_trigger(job.cron),
            args=(job, config, logs),
            id=job.name,
            name=job.name,
            max_instances=1,  # a slow run is never overlapped by its next one
            coalesce=True,  # missed runs (e.g. after a suspend) run once, not once per missed time
            misfire_grace_time=MISFIRE_GRACE_SECONDS,
        )
    return scheduler


def next_fire_times(job: ScheduledJob, after: dt.datetime, count: int = 3) -> list[dt.datetime]:
    """The job's next `count` run times strictly after `after`."""
    trigger = cron_trigger(job.cron)
    times: list[dt.datetime] = []
    while len(times) < count:
        previous = times[-1] if times else None
        moment = (previous or after) + dt.timedelta(microseconds=1)
        times.append(trigger.get_next_fire_time(previous, moment))
    return times


def run_schedule_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    jobs = load_jobs(config)
    logs = log_dir(config)
    if args.list:
        now = dt.datetime.now(dt.UTC)
        for job in jobs:
            upcoming = ", ".join(f"{moment:%Y-%m-%d %H:%M:%S}" for moment in next_fire_times(job, now))
            print(f"{job.name:<16} {job.cron:<16} {job.command}\n{'':<16} next: {upcoming} UTC")
        return 0
    if args.run:
        chosen = [job for job in jobs if job.name == args.run]
        if not chosen:
            raise UsageError(f"no scheduled job {args.run!r} (known: {[job.name for job in jobs]})")
        return run_job(chosen[0], config, logs)
    scheduler = build_scheduler(config, jobs)
    # SIGTERM (systemd stop, docker stop) shuts down like Ctrl-C: the running job finishes first.
    signal.signal(signal.SIGTERM, lambda signum, frame: scheduler.shutdown(wait=False))
    logger.info(
        f"scheduling {len(jobs)} job(s) from {config.path}; logs in {logs}",
        extra={"fields": {"jobs": [job.name for job in jobs], "log_dir": str(logs)}},
    )
    try:
        scheduler.start()
    except KeyboardInterrupt:
        scheduler.shutdown(wait=True)
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="run detections, validation and reports on cron schedules",
        description="Run the jobs of the configuration's schedule section on their cron expressions (UTC) "
        "until stopped (SIGINT/SIGTERM). Each run's output is appended to <log_dir>/<job>.log.",
    )
    add_config(parser)
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--list", action="store_true", help="show the jobs and their next run times, then exit"
    )
    action.add_argument("--run", metavar="JOB", help="run this job once now, then exit with its exit code")
    # the scheduler runs for days under a service manager: JSON lines for its log; --list/--run are one-offs
    parser.set_defaults(func=run_schedule_command, long_running=lambda args: not (args.list or args.run))
