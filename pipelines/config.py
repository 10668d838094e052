"""The one configuration file, usagewatch.yml: lake and state locations, alert routing, schedules.

Each feature validates its own section; this module loads the file, rejects unknown sections, and
turns every problem into a ConfigError that names the file and line. Secrets never live here: a
setting ending in `_env` names the environment variable that holds the secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines import paths

DEFAULT_CONFIG = paths.REPO_ROOT / "usagewatch.yml"
CONFIG_ENV = "USAGEWATCH_CONFIG"
SECTIONS = ("lake", "state", "routing", "schedule", "quality", "privacy")


class ConfigError(ValueError):
    """A configuration problem, with the file (and line, where known) in its message."""


@dataclass(frozen=True)
class Config:
    path: Path
    data: dict[str, Any]
    # top-level key -> 1-based line, so section validators can point at the right place
    lines: dict[str, int]

    def section(self, name: str, known: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
        """The section as a mapping; with `known`, any other key is an error naming the file and line."""
        if name not in SECTIONS:
            raise KeyError(name)
        value = self.data.get(name) or {}
        if not isinstance(value, dict):
            raise self.error(name, f"section '{name}' must be a mapping")
        unknown = set(value) - set(known) if known is not None else set()
        if unknown:
            raise self.error(name, f"unknown key(s) in {name}: {sorted(unknown)} (known: {sorted(known)})")
        return value

    def error(self, section: str, message: str) -> ConfigError:
        line = self.lines.get(section)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}")

    def resolve(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        path = Path(value)
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def top_level_key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level YAML key, so errors can point at the line."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 1 for key, _ in root.value}


def yaml_error_message(path: Path, error: yaml.YAMLError) -> str:
    """'file:line: invalid YAML: problem' for a parse error (the line where the parser gave up)."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    return f"{where}: invalid YAML: {getattr(error, 'problem', None) or error}"


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read configuration: {error.strerror}") from error
    try:
        data = yaml.safe_load(text) or {}
        lines = top_level_key_lines(text)
    except yaml.YAMLError as error:
        raise ConfigError(yaml_error_message(path, error)) from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the configuration must be a mapping of sections")
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(
                f"{path}:{lines.get(key, 1)}: unknown section '{key}' (known: {', '.join(SECTIONS)})"
            )
    return Config(path=path, data=data, lines=lines)
