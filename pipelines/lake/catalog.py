"""What the analyst's relations and their columns mean, one line each.

The descriptions live beside the view SQL: sql/views/<relation>.yml (`description`, `columns`, and
`columns_from: <relation>` to reuse another relation's descriptions), and sql/views/columns.yml for
columns that mean the same in every relation (dt, hr, window_start...). `analyst.open_lake` installs them
with DuckDB's COMMENT ON, so `usagewatch sql --schema`, `\\d` in the session and `duckdb_columns()` all
read the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from pipelines.infra.config import load_yaml, yaml_error_message
from pipelines.infra.paths import VIEWS_DIR

# Not a relation: the descriptions of columns shared by many relations.
SHARED_COLUMNS_FILE = "columns.yml"
_RELATION_KEYS = {"description", "columns", "columns_from"}


class CatalogError(ValueError):
    """A description file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class RelationDescription:
    name: str
    description: str
    columns: dict[str, str]


def _read(path: Path) -> tuple[dict, dict]:
    try:
        data, lines = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CatalogError(yaml_error_message(path, error)) from error
    if not isinstance(data, dict):
        raise CatalogError(f"{path}:1: expected a mapping")
    return data, lines


def _text_mapping(path: Path, data: dict, lines: dict, key: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise CatalogError(f"{path}:{lines.get((key,), 1)}: {key} must map column names to descriptions")
    for column, text in value.items():
        if not isinstance(text, str) or not text.strip() or "\n" in text.strip():
            line = lines.get((key, column), 1)
            raise CatalogError(f"{path}:{line}: {key}.{column} must be one line of text")
    return {str(column): text.strip() for column, text in value.items()}


def load_descriptions(views_dir: Path = VIEWS_DIR) -> dict[str, RelationDescription]:
    """Every relation's description with its columns' (own, then `columns_from`'s, then shared ones)."""
    shared_path = views_dir / SHARED_COLUMNS_FILE
    shared = _text_mapping(shared_path, *_read(shared_path), "columns") if shared_path.exists() else {}
    raw: dict[str, tuple[Path, dict, dict]] = {}
    for path in sorted(views_dir.glob("*.yml")):
        if path.name != SHARED_COLUMNS_FILE:
            raw[path.stem] = (path, *_read(path))
    relations = {}
    for name, (path, data, lines) in raw.items():
        unknown = sorted(set(data) - _RELATION_KEYS)
        if unknown:
            raise CatalogError(
                f"{path}:{lines[(unknown[0],)]}: unknown key {unknown[0]!r} (known: "
                f"{', '.join(sorted(_RELATION_KEYS))})"
            )
        description = data.get("description")
        if not isinstance(description, str) or not description.strip():
            line = lines.get(("description",), 1)
            raise CatalogError(f"{path}:{line}: description must be one line of text")
        columns = dict(shared)
        source = data.get("columns_from")
        if source is not None:
            if source not in raw or source == name:
                raise CatalogError(
                    f"{path}:{lines[('columns_from',)]}: columns_from names no other relation "
                    f"described in {views_dir}: {source!r}"
                )
            source_path, source_data, source_lines = raw[source]
            columns.update(_text_mapping(source_path, source_data, source_lines, "columns"))
        columns.update(_text_mapping(path, data, lines, "columns"))
        relations[name] = RelationDescription(name, description.strip(), columns)
    return relations


def relation_rows(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple]]:
    """(columns, rows) listing every relation with its kind, column count and description."""
    query = """
        select view_name as name, 'view' as kind, column_count as columns, comment as description
        from duckdb_views() where not internal and database_name = 'memory'
        union all
        select table_name, 'table', column_count, comment
        from duckdb_tables() where not internal and database_name = 'memory'
        order by name
    """
    cursor = con.execute(query)
    return [column[0] for column in cursor.description], cursor.fetchall()


def column_rows(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[list[str], list[tuple]]:
    """(columns, rows): each column of `relation` with its type and description; no rows if unknown."""
    cursor = con.execute(
        "select column_name as column, data_type as type, comment as description from duckdb_columns() "
        "where table_name = $name and database_name = 'memory' and not internal order by column_index",
        {"name": relation},
    )
    return [column[0] for column in cursor.description], cursor.fetchall()
