"""The one configuration file, usagewatch.yml: lake and state locations, alert routing, schedules.

Each feature validates its own section; this module loads the file strictly (UTF-8, no key given twice,
no NaN/infinity, no unknown section) and turns every problem into a ConfigError that names the file and
the offending key's own line. Secrets never live here: a setting ending in `_env` names the environment
variable that holds the secret.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.infra import paths

# A checkout's own usagewatch.yml; installed from the wheel there is no checkout, so the file in the
# current folder (like most command-line tools' project files).
DEFAULT_CONFIG = Path("usagewatch.yml") if paths.INSTALLED else paths.REPO_ROOT / "usagewatch.yml"
CONFIG_ENV = "USAGEWATCH_CONFIG"
SECTIONS = ("lake", "state", "routing", "incidents", "schedule", "quality", "privacy", "analyst")

# A key's place in a YAML document: mapping keys and list indexes from the root.
KeyPath = tuple[str | int, ...]


class ConfigError(ValueError):
    """A configuration problem, with the file (and line, where known) in its message."""


@dataclass(frozen=True)
class Config:
    path: Path
    data: dict[str, Any]
    # top-level key -> 1-based line, so section validators can point at the right place
    lines: dict[str, int]
    # every key (and list item) -> 1-based line, so an error names the offending key's own line
    key_lines: dict[KeyPath, int] = field(default_factory=dict)

    def section(self, name: str, known: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
        """The section as a mapping; with `known`, any other key is an error naming the file and line."""
        if name not in SECTIONS:
            raise KeyError(name)
        value = self.data.get(name) or {}
        if not isinstance(value, dict):
            raise self.error(name, f"section '{name}' must be a mapping")
        unknown = sorted(set(value) - set(known), key=str) if known is not None else []
        if unknown:
            raise self.error(
                name, f"unknown key(s) in {name}: {unknown} (known: {sorted(known)})", unknown[0]
            )
        return value

    def error(self, section: str, message: str, *keys: str | int) -> ConfigError:
        """A ConfigError at the line of section.keys (the nearest enclosing key that has a line)."""
        path: KeyPath = (section, *keys)
        line = next(
            (self.key_lines[path[:end]] for end in range(len(path), 0, -1) if path[:end] in self.key_lines),
            self.lines.get(section),
        )
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}")

    def check_number(
        self, value: Any, minimum: float, maximum: float, section: str, *keys: str | int, whole: bool = False
    ) -> float:
        """`value` if it is a finite number within [minimum, maximum] (and whole if asked), else an error
        naming section.keys and its line: no booleans, `.nan`, `.inf`, or `attempts: 1e9`."""
        name = ".".join(str(key) for key in (section, *keys))
        valid = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and minimum <= value <= maximum
            and (not whole or value == int(value))
        )
        if not valid:
            kind = "a whole number" if whole else "a number"
            raise self.error(
                section, f"{name} must be {kind} from {minimum:g} to {maximum:g}, got {value!r}", *keys
            )
        return value

    def resolve(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        path = Path(value)
        return path if path.is_absolute() else (self.path.parent / path).resolve()


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last:
    a second `routing:` section would drop every sink of the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_lines.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error names it
            if first != line:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r} (first on line {first}, again on line {line})",
                    problem_mark=key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def _key_lines(node: yaml.Node | None, path: KeyPath = ()) -> dict[KeyPath, int]:
    lines: dict[KeyPath, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key_path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            lines.update(_key_lines(item, (*path, index)))
    return lines


def load_yaml(text: str) -> tuple[Any, dict[KeyPath, int]]:
    """(document, line of every key) of one YAML document; a key given twice is a yaml.YAMLError."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, _key_lines(node)


def yaml_error_message(path: Path, error: yaml.YAMLError) -> str:
    """'file:line: invalid YAML: problem' for a parse error (the line where the parser gave up)."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    return f"{where}: invalid YAML: {getattr(error, 'problem', None) or error}"


def read_utf8(path: Path) -> str:
    """The file's text; a file that is not UTF-8 is a ConfigError naming the file, line and byte."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read configuration: {error.strerror}") from error
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        ) from None


def _first_non_finite(value: Any, path: KeyPath = ()) -> tuple[KeyPath, float] | None:
    """(where, value) of the first NaN or infinity: no setting means "not a number" or "forever"."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        found = _first_non_finite(child, (*path, key))
        if found is not None:
            return found
    return None


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    text = read_utf8(path)
    try:
        data, key_lines = load_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(yaml_error_message(path, error)) from error
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the configuration must be a mapping of sections")
    lines = {key[0]: line for key, line in key_lines.items() if len(key) == 1}
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(
                f"{path}:{lines.get(key, 1)}: unknown section '{key}' (known: {', '.join(SECTIONS)})"
            )
    config = Config(path=path, data=data, lines=lines, key_lines=key_lines)
    non_finite = _first_non_finite(data)
    if non_finite is not None:
        (section, *keys), value = non_finite
        name = ".".join(str(key) for key in (section, *keys))
        raise config.error(str(section), f"{name} must be a finite number, not {value}", *keys)
    return config
