"""The aggregation job as a separate process that a test can SIGKILL, and polling on it with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pipelines.infra import paths
from pipelines.stream.flink_job import job_command

DEADLINE_S = 150.0


class RunningJob:
    """The aggregation job in its own process group, so a test can SIGKILL all of it (JVM included)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            job_command(args),
            cwd=paths.REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 40) -> str:
        """The end of the job's log, so a failure on CI (where the log is not kept) says what the job did."""
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join([f"--- last {lines} lines of {self.log.name}", *text[-lines:]])

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
        self.process.wait(timeout=60)
        self.log.close()


def wait_for(condition, what: str, job: RunningJob, deadline_s: float = DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert job.process.poll() is None, f"the job exited while waiting for {what}:\n{job.log_tail()}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}:\n{job.log_tail()}")
