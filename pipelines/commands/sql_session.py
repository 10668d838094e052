"""The interactive `usagewatch sql` session: statements end with `;`, meta-commands start with `\\`.

It runs every statement through the same `execute` as a one-off `usagewatch sql` query (commands/lake.py:
the read-only, sandboxed connection under the analyst: limits), so the session can do nothing a single
query cannot. The only meta-commands are the read-only ones below: no shell escape, no file input or
output. On a terminal, line editing and history come from readline; the history file lives in the run
directory, readable by its owner only (queries name accounts). Piped in, the same session reads
statements from stdin without prompts.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.infra.paths import RUN_DIR
from pipelines.infra.rendering import terminal_safe

HISTORY_FILE = RUN_DIR / "sql_history"
HISTORY_LENGTH = 1000
PROMPT = "usagewatch> "
CONTINUATION_PROMPT = "        ..> "
HELP = """\
  SELECT ... ;   run a query (it may span lines; a ; ends it)
  \\d             list the tables and views, one line of description each
  \\d NAME        the columns of NAME with their types and descriptions
  \\?             this help
  \\q             quit (or Ctrl-D)"""


class _History:
    """readline's history, read from and written back to the run directory's file."""

    def __init__(self, path: Path) -> None:
        import readline  # imported for its side effect too: input() edits lines with it

        self.readline, self.path = readline, path
        readline.set_history_length(HISTORY_LENGTH)
        if path.is_file():
            readline.read_history_file(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        os.chmod(self.path, 0o600)
        self.readline.write_history_file(self.path)


def _meta_command(line: str, describe: Callable[[str | None], str | None]) -> bool:
    """Run one backslash command; False when it asks to quit."""
    command, _, argument = line.partition(" ")
    argument = argument.strip()
    if command == "\\q":
        return False
    if command == "\\d":
        text = describe(argument or None)
        if text is None:
            print(f"no table or view named '{terminal_safe(argument)}'; \\d lists them", file=sys.stderr)
        else:
            print(text)
    elif command in ("\\?", "\\h", "\\help"):
        print(HELP)
    else:
        print(f"unknown command {terminal_safe(command)}; \\? lists the commands", file=sys.stderr)
    return True


@contextmanager
def _ctrl_c_interrupts(interrupt: Callable[[], None]) -> Iterator[None]:
    """While a statement runs, Ctrl-C calls `interrupt` (the connection's) from a helper thread.

    The main thread is inside DuckDB then, where a Python signal handler runs only when DuckDB looks
    (it often did not, on a loaded machine); the signal's byte on a wakeup fd reaches the helper at once.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: None)  # no KeyboardInterrupt
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while received := os.read(read_end, 64):
            if signal.SIGINT in received:
                interrupt()

    watcher = threading.Thread(target=watch, name="ctrl-c", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        os.close(write_end)  # ends the watcher's read
        watcher.join()
        os.close(read_end)


def run_session(
    execute: Callable[[str], int],
    describe: Callable[[str | None], str | None],
    interrupt: Callable[[], None],
    history_file: Path = HISTORY_FILE,
) -> int:
    """Read statements until \\q or end of input, run each with `execute` (an exit code back; Ctrl-C
    calls `interrupt`), answer \\d with `describe` (all relations, or one's columns; None if there is
    none); 0 if every statement ran, else 1."""
    interactive = sys.stdin.isatty()
    history = _History(history_file) if interactive else None
    if interactive:
        print("usagewatch sql: read-only over the lake; \\d lists the relations, \\? the commands, \\q quits")
    failed = False
    pending: list[str] = []
    try:
        while True:
            try:
                line = input((CONTINUATION_PROMPT if pending else PROMPT) if interactive else "")
                stripped = line.strip()
                if not pending and stripped.startswith("\\"):
                    if not _meta_command(stripped, describe):
                        break
                    continue
                if stripped or pending:
                    pending.append(line)
                if stripped.endswith(";"):
                    statement, pending = "\n".join(pending), []
                    with _ctrl_c_interrupts(interrupt):
                        failed |= execute(statement) != 0
            except EOFError:
                if interactive:
                    print()
                break
            except KeyboardInterrupt:  # Ctrl-C drops the statement being typed (or about to run), as in psql
                pending.clear()
                print()
        if "".join(pending).strip():  # input ended without the closing ;
            failed |= execute("\n".join(pending)) != 0
    finally:
        if history is not None:
            history.save()
    return 1 if failed else 0
