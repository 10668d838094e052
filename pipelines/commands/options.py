"""The options several commands share, declared once, and how a command reads them.

`--config`, `--lake` and `--state` mean the same everywhere: the configuration file, and the lake and
state database it names unless the option overrides them (pipelines/lake/layout.py and
pipelines/incidents/alert_state.py own those locations). `--quiet/--verbose` are added to every command
by cli.build_parser.

A handler that finds its invocation unusable, or its work failed in a way the domain reports with a plain
Python error, raises UsageError or CommandFailed; cli.EXPECTED_ERRORS turns those, like the domain's own
errors, into one line and an exit code. No handler prints an error and picks an exit code itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.infra.config import Config, load_config


class UsageError(Exception):
    """The invocation is unusable: an argument, or a file it names, the command cannot start with (exit 2)."""


class CommandFailed(Exception):
    """What the command drives failed, and the domain said so with a plain Python error (exit 1)."""


CONFIG_HELP = "usagewatch.yml (default: repo root, or $USAGEWATCH_CONFIG)"
LAKE_HELP = "lake directory (default: lake.path of the configuration)"
STATE_HELP = "state database (default: state.path of the configuration)"


def add_config(parser: argparse.ArgumentParser, help: str = CONFIG_HELP) -> None:
    parser.add_argument("--config", metavar="FILE", help=help)


def add_lake(parser: argparse.ArgumentParser, help: str = LAKE_HELP) -> None:
    parser.add_argument("--lake", help=help)


def add_state(parser: argparse.ArgumentParser, help: str = STATE_HELP) -> None:
    parser.add_argument("--state", help=help)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    level = parser.add_mutually_exclusive_group()
    level.add_argument(
        "--quiet", dest="verbosity", action="store_const", const="quiet", help="log warnings and errors only"
    )
    level.add_argument(
        "--verbose", dest="verbosity", action="store_const", const="verbose", help="log debugging detail"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text or JSON lines (default: JSON for long-running commands, text otherwise)",
    )
    parser.set_defaults(verbosity="normal")


def config_of(args: argparse.Namespace) -> Config:
    """The configuration the command runs with (ConfigError naming file and line when it is bad)."""
    return load_config(args.config)


def lake_of(args: argparse.Namespace, config: Config | None = None) -> Path:
    """--lake, else the configuration's lake.path (the configuration is loaded only when needed)."""
    from pipelines.lake.layout import lake_path  # here: cli imports this module, and not every command

    return Path(args.lake) if args.lake else lake_path(config or config_of(args))


def existing_lake(lake: Path) -> Path:
    """`lake` when it is a directory; else the UsageError every command gives for a missing lake."""
    if not lake.is_dir():
        raise UsageError(f"lake directory {lake} does not exist")
    return lake


def state_of(args: argparse.Namespace, config: Config | None = None) -> Path:
    from pipelines.incidents.alert_state import state_path  # needs DuckDB (see lake_of)

    return state_path(config or config_of(args), args.state)


def with_state(args: argparse.Namespace, action: Callable[[Config, Any], int]) -> int:
    """action(config, store) on the state database of the command's --config/--state; its exit code."""
    from pipelines.incidents.alert_state import AlertStore  # needs DuckDB (see lake_of)

    config = config_of(args)
    with AlertStore.open(state_of(args, config)) as store:
        return action(config, store)
