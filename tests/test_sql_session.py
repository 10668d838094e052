"""The interactive `usagewatch sql` session: on a real pseudo-terminal (readline, history, the terminal row
limit) and piped; it can do nothing a single read-only query cannot."""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lakefixture import write_events

from pipelines.infra.paths import REPO_ROOT

DEADLINE_SECONDS = 60
EVENTS = [
    {"event_id": f"e-{i}", "event_time": "2026-03-01T10:00:00.000Z", "account_id": f"acct-{i % 3}"}
    for i in range(120)
]


@pytest.fixture
def lake(tmp_path):
    write_events(tmp_path / "lake", EVENTS)
    return tmp_path / "lake"


def sql_argv(tmp_path: Path, lake: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.commands.cli", "sql", "--lake", str(lake),
        "--state", str(tmp_path / "no-state.duckdb"), *extra,
    ]  # fmt: skip


def session_env(tmp_path: Path) -> dict[str, str]:
    run_dir = str(tmp_path / "run")
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "USAGEWATCH_RUN_DIR": run_dir, "TERM": "dumb"}


class Terminal:
    """A process whose stdin, stdout and stderr are a pseudo-terminal that the test types into."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.controller, terminal = os.openpty()
        self.process = subprocess.Popen(
            argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env,
            # a shell's background job ignores SIGINT, and Python keeps a signal ignored that it was
            # started with: give the session the default, as a terminal would
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        os.close(terminal)
        self.screen = b""

    def type(self, text: str) -> None:
        os.write(self.controller, text.encode())

    def read(self, timeout: float) -> bool:
        """Read what is there; False once the process has closed the terminal."""
        ready, _, _ = select.select([self.controller], [], [], timeout)
        if not ready:
            return self.process.poll() is None
        try:
            chunk = os.read(self.controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            return False
        self.screen += chunk
        return bool(chunk)

    def wait_for(self, text: str, then=None) -> None:
        """Read until `text` is on the screen, calling `then` between reads (e.g. to send a signal)."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while text not in self.text():
            if time.monotonic() > deadline or not self.read(0.2):
                raise AssertionError(f"{text!r} not on the terminal:\n{self.text()}")
            if then is not None:
                then()

    def finish(self) -> tuple[int, str]:
        """Read until the process ends; (exit code, everything it wrote)."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            while self.read(0.5):
                if time.monotonic() > deadline:
                    raise AssertionError(f"still running after {DEADLINE_SECONDS} s:\n{self.text()}")
            return self.process.wait(timeout=DEADLINE_SECONDS), self.text()
        finally:
            os.close(self.controller)
            if self.process.poll() is None:
                self.process.kill()

    def text(self) -> str:
        return self.screen.decode(errors="replace").replace("\r\n", "\n")


def run_on_terminal(argv: list[str], typed: str, env: dict[str, str]) -> tuple[int, str]:
    terminal = Terminal(argv, env)
    terminal.type(typed)
    return terminal.finish()


def test_a_terminal_session_runs_queries_keeps_history_and_recalls_it(lake, tmp_path):
    env = session_env(tmp_path)
    typed = "select count(*) * 2\n  as doubled\nfrom events;\n\\d\n\\d late_events\n\\q\n"
    code, screen = run_on_terminal(sql_argv(tmp_path, lake), typed, env)
    assert code == 0, screen
    assert "usagewatch> " in screen and "..> " in screen  # the prompt, then the open statement's
    assert "\n240 " in screen or "\n240\n" in screen
    assert "every valid access event" in screen  # \d lists the relations with descriptions
    assert "watermark_at_arrival" in screen  # \d NAME lists its columns

    history = tmp_path / "run" / "sql_history"
    assert "from events;" in history.read_text()
    assert stat.S_IMODE(history.stat().st_mode) == 0o600  # queries name accounts: the owner's only

    # A new session reads the history: Ctrl-P twice recalls the line before the last (\q): \d late_events.
    code, screen = run_on_terminal(sql_argv(tmp_path, lake), "\x10\x10\n\\q\n", env)
    assert code == 0 and "watermark_at_arrival" in screen


def test_a_terminal_shows_a_screenful_and_says_how_many_rows_there_are(lake, tmp_path):
    env = session_env(tmp_path)
    code, screen = run_on_terminal(sql_argv(tmp_path, lake, "select event_id from events"), "", env)
    assert code == 0, screen
    lines = screen.rstrip("\n").splitlines()
    assert lines[-1] == "(… 120 rows, showing 50; --limit N or --all for more)"
    assert len([line for line in lines if line.startswith("e-")]) == 50

    code, screen = run_on_terminal(sql_argv(tmp_path, lake, "--all", "select event_id from events"), "", env)
    assert code == 0 and screen.rstrip("\n").splitlines()[-1] == "(120 rows)"


def test_the_session_cannot_escape_the_sandbox(lake, tmp_path):
    outside = tmp_path / "outside"
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    attempts = [
        f"copy (select * from events) to '{outside}.csv';",
        f"attach '{outside}.duckdb' as written;",
        "set enable_external_access = true;",
        "reset lock_configuration;",
        "install httpfs;",
        "load httpfs;",
        f"select * from read_text('{secret}');",
        f"select * from read_csv('{secret}');",
        "create table copied as select * from events;",
        "select 1; drop view events;",
        "pragma enable_profiling;",
        "\\! touch " + str(outside),  # no shell escape
        f"\\o {outside}.out",  # no output redirection
        f"\\i {secret}",  # no file input
        f".shell touch {outside};",  # DuckDB CLI's dot commands are not SQL here
    ]
    script = "\n".join([*attempts, "select count(*) as still_there from events;", ""])
    result = subprocess.run(
        sql_argv(tmp_path, lake), input=script, capture_output=True, text=True, env=session_env(tmp_path),
        timeout=DEADLINE_SECONDS,
    )  # fmt: skip
    assert result.returncode == 1  # some statements failed
    assert result.stdout.splitlines() == ["still_there", "-----------", "120", "(1 row)"]  # and nothing else
    assert "do not read me" not in result.stdout + result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lake", "secret.txt"]  # nothing written
    refusals = result.stderr.count("refused:") + result.stderr.count("query failed:")
    assert refusals == 12, result.stderr  # every SQL attempt, each on its own
    assert result.stderr.count("unknown command") == 3


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_ctrl_c_stops_the_query_and_not_the_session(lake, tmp_path):
    terminal = Terminal(sql_argv(tmp_path, lake), session_env(tmp_path))
    terminal.wait_for("usagewatch> ")
    idle = cpu_ticks(terminal.process.pid)
    terminal.type("select count(*) from range(1000000000000000);\n")  # days of work
    # Ctrl-C once the query is surely running: the session has used a good 0.3 s of CPU since the prompt
    terminal.wait_for("range(1000000000000000);")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while cpu_ticks(terminal.process.pid) < idle + os.sysconf("SC_CLK_TCK") * 0.3:
        assert time.monotonic() < deadline, "the query never ran"
        terminal.read(0.2)
    terminal.process.send_signal(signal.SIGINT)
    terminal.wait_for("interrupted\nusagewatch> ")  # the session is back at its prompt
    terminal.type("select 6 * 7 as answer;\n\\q\n")
    code, screen = terminal.finish()
    assert code == 1  # one statement did not finish
    assert "\n42" in screen and "Traceback" not in screen
