"""README's "Reading the lake": its DuckDB and pyarrow/pandas recipes, taken from the README itself and run on
a lake, give what `usagewatch sql` gives; the README's command table matches `usagewatch --help`; every
view the README or a runbook sends an analyst to exists in `usagewatch sql`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.commands import cli
from pipelines.infra.paths import REPO_ROOT, SQL_DIR
from pipelines.lake import analyst
from pipelines.lake.batch_lake import build_lake
from pipelines.lake.layout import TABLES
from pipelines.stream.flink_job import run_job

README = REPO_ROOT / "README.md"
RECIPES_SECTION = "## Reading the lake"
START = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(title + "\n")
    following = text.find("\n## ", start + len(title))
    return text[start : following if following >= 0 else len(text)]


def code_blocks(section: str) -> dict[str, str]:
    """Fenced blocks by their info string ("sql duckdb", "python pyarrow", ...)."""
    blocks = re.findall(r"^```([^\n`]+)\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    found = {info.strip(): code for info, code in blocks}
    assert len(found) == len(blocks), "two recipes with the same info string"
    return found


def corpus() -> list[dict]:
    """Three accounts over two UTC hours (two partitions per table), different output volumes."""
    events = []
    for minute in range(0, 90, 3):
        for number, account in enumerate(("acct-a", "acct-b", "acct-c")):
            events.append({
                "event_id": f"e-{minute}-{account}",
                "event_time": (START + dt.timedelta(minutes=minute, seconds=number)).isoformat(
                    timespec="milliseconds").replace("+00:00", "Z"),
                "account_id": account, "api_key_id": f"key-{account}", "source_ip": f"192.0.2.{number + 1}",
                "country": "DE", "asn": 64500, "asn_type": "business", "model": "model-large",
                "endpoint": "/v1/messages", "input_tokens": 100, "output_tokens": 100 * (number + 1) + minute,
                "status_code": 200,
            })  # fmt: skip
    return events


def write_corpus(folder: Path) -> Path:
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in corpus()))
    return path


def expected_top(lake: Path) -> list[tuple[str, int]]:
    """What `usagewatch sql`'s own views say: output tokens per account, largest first."""
    con = analyst.open_lake(lake)
    try:
        query = "select account_id, sum(output_tokens) from events group by 1 order by 2 desc, 1"
        return [(account, int(total)) for account, total in analyst.execute_read_only(con, query)[1]]
    finally:
        con.close()


def check_recipes(root: Path, monkeypatch) -> None:
    """Run the README's DuckDB and pyarrow recipes from `root` (the folder holding lake/)."""
    blocks = code_blocks(readme_section(RECIPES_SECTION))
    assert {"sql duckdb", "python pyarrow", "python spark", "sql trino"} <= set(blocks)
    expected = expected_top(root / "lake")
    assert len(expected) == 3
    monkeypatch.chdir(root)

    rows = duckdb.sql(blocks["sql duckdb"]).fetchall()
    assert [(account, int(output)) for account, _, output in rows] == expected
    assert sum(requests for _, requests, _ in rows) == len(corpus())

    namespace: dict = {}
    exec(compile(blocks["python pyarrow"], f"{README}: python pyarrow", "exec"), namespace)  # noqa: S102
    frame, top = namespace["frame"], namespace["top"]
    assert len(frame) == len(corpus())
    assert str(frame["event_time"].dtype).startswith("datetime64")
    assert sorted(set(frame["hr"])) == ["09", "10"]  # strings, as the folder names say
    assert [(account, int(total)) for account, total in top.items()] == expected


def test_the_duckdb_and_pandas_recipes_read_a_batch_built_lake(tmp_path, monkeypatch):
    build_lake(write_corpus(tmp_path), tmp_path / "lake")
    check_recipes(tmp_path, monkeypatch)


@pytest.mark.integration
def test_the_recipes_read_the_streaming_jobs_lake_with_the_usual_patterns(tmp_path, monkeypatch):
    """The job's own files: found by the recipes' part-* glob and by folder readers, timestamps INT64 (not
    INT96). They carry no .parquet extension: Flink 2.2's filesystem sink sets a file prefix only."""
    source = write_corpus(tmp_path)
    assert run_job(["--source", "file", "--input", str(source), "--lake", str(tmp_path / "lake")]) == 0
    for table in TABLES:
        for path in table.committed_files(tmp_path / "lake").readable:
            assert path.name.startswith("part-"), f"{path} is not found by the part-* glob"
            schema = pq.ParquetFile(path).schema
            physical = {schema.column(i).name: schema.column(i).physical_type for i in range(len(schema))}
            assert "INT96" not in physical.values(), f"{path} has legacy INT96 timestamps: {physical}"
    check_recipes(tmp_path, monkeypatch)


# --- the README and the runbooks against the command line -------------------------------------------


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of a parser and of its subcommands."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= _options(subparser)
    return found


def command_table() -> list[tuple[str, str]]:
    """(usage cell, description cell) of each row of README's command table."""
    section = readme_section("## Command line")
    rows = re.findall(r"^\| (`usagewatch .*?) \| (.*) \|$", section, flags=re.MULTILINE)
    assert rows, "no command table"
    return rows


def _mentions(text: str) -> set[str]:
    return set(re.findall(r"`usagewatch [a-z]+|`[a-z]+`", text))


def test_the_readme_command_table_matches_the_help():
    documented: dict[str, set[str]] = {}
    for usage, _ in command_table():
        for form in re.findall(r"`usagewatch ([^`]+)`", usage):
            command = form.split()[0].split("\\|")[0]
            documented.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", form))
    assert set(documented) <= set(cli.COMMANDS), "the table names commands that do not exist"
    table_text = "\n".join(usage + " " + text for usage, text in command_table())
    # a command is in the table as `usagewatch NAME ...`, or as an alias named in a row (`alerts`)
    mentioned = _mentions(table_text)
    missing = [name for name in cli.COMMANDS if not {f"`usagewatch {name}", f"`{name}`"} & mentioned]
    assert missing == [], "commands of usagewatch --help without a row"
    for command, options in documented.items():
        unknown = options - _options(cli.build_parser(command))
        assert not unknown, f"README shows usagewatch {command} {sorted(unknown)}, which --help does not have"


def test_options_with_a_configuration_default_are_shown_as_optional():
    for usage, _ in command_table():
        unbracketed = re.sub(r"\[[^\]]*\]", "", usage)
        defaulted = re.search(r"--(lake|state|config)\b", unbracketed)
        assert not defaulted, f"{usage}: --lake, --state and --config have defaults, so belong in [brackets]"


def _views_named_in(text: str) -> set[str]:
    """Relation names after "`usagewatch sql` on" (X, or X and Y) and in the README's "Views:" list."""
    text = " ".join(text.split())
    names = set()
    for listed in re.findall(r"`usagewatch sql` on (`?\w+`?(?: and `?\w+`?)*)", text):
        names |= set(re.findall(r"\w+", listed)) - {"and"}
    for listed in re.findall(r"Views: (.*?)\.(?: |$)", text):
        names |= set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", listed)))  # not "(… `detect` …)"
    return names


def test_every_view_the_readme_or_a_runbook_names_exists_in_usagewatch_sql(tmp_path):
    runbooks = []
    for rule in SQL_DIR.glob("detections/**/*.yml"):
        runbook = (yaml.safe_load(rule.read_text()) or {}).get("runbook") or {}
        runbooks += [str(step) for step in runbook.values()]
    named = _views_named_in(README.read_text()) | _views_named_in(" ".join(runbooks))
    assert {"events", "asn_minute", "signals"} <= named  # the extraction finds what is there
    (tmp_path / "lake" / "events").mkdir(parents=True)
    con = analyst.open_lake(tmp_path / "lake", state_file=tmp_path / "none.duckdb")
    try:
        relations = {name for name, *_ in analyst.catalog.relation_rows(con)[1]}
    finally:
        con.close()
    assert sorted(named - relations) == []
