"""The analyst layer: views over the lake, and the read-only `usagewatch sql` command."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import unicodedata
from pathlib import Path

import duckdb
import pytest
import yaml
from lakefixture import write_events
from signalfixture import RING, Engine, ring_signals

from pipelines.commands import cli
from pipelines.incidents.alert_state import AlertStore
from pipelines.infra.paths import VIEWS_DIR
from pipelines.lake import analyst, catalog
from pipelines.lake.layout import EVENTS, TABLES

EVENTS_ROWS = [
    {
        "event_id": "e-1",
        "event_time": "2026-03-01T10:00:00.123Z",
        "account_id": "acct-1",
        "source_ip": "192.0.2.1",
        "country": "DE",
        "request_tags": ["reasoning_elicitation"],
        "input_tokens": 10,
        "status_code": 200,
    },
    {
        "event_id": "e-2",
        "event_time": "2026-03-01T11:30:00.000Z",
        "account_id": "acct-2",
        "source_ip": "192.0.2.2",
        "country": "IR",
        "input_tokens": 20,
        "status_code": 200,
    },
]


@pytest.fixture
def lake(tmp_path):
    write_events(tmp_path / "lake", EVENTS_ROWS)
    return tmp_path / "lake"


def run_sql(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["sql", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sql_prints_rows_as_a_table(lake, capsys):
    code, out, _ = run_sql(
        capsys, "--lake", str(lake), "select account_id, country, event_time from events order by account_id"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split(" | ") == ["account_id", "country", "event_time"]
    assert "acct-1     | DE      | 2026-03-01T10:00:00.123Z" in out
    assert "acct-2     | IR" in out
    assert lines[-1] == "(2 rows)"


def test_sql_has_the_enriched_view_the_runbooks_send_analysts_to(lake, capsys):
    """The view the detections read, with the same columns: an analyst re-runs a detection's reasoning."""
    code, out, err = run_sql(
        capsys,
        "--lake",
        str(lake),
        "--format",
        "csv",
        "select account_id, country, country_source, org_key from events_enriched order by account_id",
    )
    assert code == 0, err
    assert list(csv.reader(io.StringIO(out)))[1:] == [
        ["acct-1", "DE", "edge", "no-org:acct-1"],
        ["acct-2", "IR", "edge", "no-org:acct-2"],
    ]


def test_sql_csv_and_json_formats(lake, capsys):
    query = "select account_id, request_tags, dt, hr from events order by account_id"
    code, out, _ = run_sql(capsys, "--lake", str(lake), "--format", "csv", query)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["account_id", "request_tags", "dt", "hr"]
    assert rows[1] == ["acct-1", '["reasoning_elicitation"]', "2026-03-01", "10"]

    code, out, _ = run_sql(capsys, "--lake", str(lake), "--format", "json", query)
    assert code == 0
    first = json.loads(out.splitlines()[0])
    assert first == {
        "account_id": "acct-1",
        "request_tags": ["reasoning_elicitation"],
        "dt": "2026-03-01",
        "hr": "10",
    }


def test_with_query_and_reference_view(lake, capsys):
    query = (
        "with hits as (select e.account_id from events e join restricted_countries r "
        "on e.country = r.country_code) select * from hits"
    )
    code, out, _ = run_sql(capsys, "--lake", str(lake), query)
    assert code == 0
    assert "acct-2" in out and "acct-1" not in out


@pytest.mark.parametrize(
    "query",
    [
        "create table stolen as select * from events",
        "copy (select * from events) to 'leak.csv'",
        "attach 'other.duckdb' as other",
        "install httpfs",
        "load httpfs",
        "set enable_external_access = true",
        "pragma version",
        "select 1; select 2",
        "select 1; drop view events",
        "insert into events select * from events",
    ],
)
def test_sql_refuses_anything_but_one_select(lake, capsys, tmp_path, query):
    code, out, err = run_sql(capsys, "--lake", str(lake), query)
    assert code != 0
    assert err.startswith("refused: ")
    assert out == ""
    assert not (tmp_path / "leak.csv").exists()


def test_sql_reports_query_errors(lake, capsys):
    code, _, err = run_sql(capsys, "--lake", str(lake), "select no_such_column from events")
    assert code == 1
    assert "query failed" in err and "no_such_column" in err


def test_locked_connection_cannot_read_other_files_or_unlock(lake, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("token\nabc\n")
    con = analyst.open_lake(lake)
    try:
        with pytest.raises(duckdb.PermissionException):
            analyst.execute_read_only(
                con, f"select * from read_csv({analyst.sql_string_literal(str(secret))})"
            )
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("set enable_external_access = true")
        # ...while the views over the lake still read
        assert analyst.execute_read_only(con, "select count(*) from events")[1] == [(2,)]
    finally:
        con.close()


def test_views_on_an_empty_lake_have_every_column(tmp_path):
    con = analyst.open_lake(tmp_path / "young-lake")
    try:
        for table in TABLES:
            columns, rows = analyst.execute_read_only(con, f"select * from {table.name}")
            assert rows == []
            assert columns == [name for name, _ in table.columns]
        types = dict(con.execute("select column_name, column_type from (describe events)").fetchall())
        assert types["event_time"] == "TIMESTAMP"
        assert types["request_tags"] == "VARCHAR[]"
        assert types["kafka_partition"] == "INTEGER"
    finally:
        con.close()


def test_files_missing_a_newer_column_still_give_every_column(tmp_path):
    # An old file written before a column existed: the view fills the column with nulls.
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = EVENTS.path(tmp_path) / "dt=2026-03-01" / "hr=10"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"event_id": ["old-1"], "account_id": ["acct-old"]}), folder / "part-old-0")
    con = analyst.open_lake(tmp_path)
    try:
        columns, rows = analyst.execute_read_only(con, "select event_id, extras, dt, hr from events")
        assert rows == [("old-1", None, "2026-03-01", "10")]
    finally:
        con.close()


def test_in_progress_files_are_not_read(lake):
    hidden = next(EVENTS.path(lake).glob("dt=*/hr=*"))
    (hidden / ".part-in-progress-0.inprogress").write_bytes(b"not parquet yet")
    con = analyst.open_lake(lake)
    try:
        assert analyst.execute_read_only(con, "select count(*) from events")[1] == [(2,)]
    finally:
        con.close()


def test_lake_path_with_a_quote_is_quoted(tmp_path):
    lake = tmp_path / "o'brien lake"
    write_events(lake, EVENTS_ROWS[:1])
    con = analyst.open_lake(lake)
    try:
        assert analyst.execute_read_only(con, "select account_id from events")[1] == [("acct-1",)]
    finally:
        con.close()


def test_restricted_countries_reference_is_dated_and_sourced(tmp_path):
    con = analyst.open_lake(tmp_path)
    try:
        columns, rows = analyst.execute_read_only(con, "select * from restricted_countries")
    finally:
        con.close()
    by_code = {row[columns.index("country_code")]: dict(zip(columns, row, strict=True)) for row in rows}
    assert {"CU", "IR", "KP", "SY"} <= by_code.keys()
    for code in ("CU", "IR", "KP", "SY"):
        assert by_code[code]["basis"] == "export-control"
        assert "15 CFR" in by_code[code]["source"]
    for row in by_code.values():
        assert row["basis"] in {"export-control", "provider-policy"}
        assert row["effective_from"] is not None and row["source"] and row["regime"]


# --- the sandbox: the lake's tables and the reference data, nothing else (issue 11, finding 2) -------


@pytest.mark.parametrize("directory", ["/proc", "/", "~", "an empty folder"])
def test_sql_refuses_a_directory_that_is_not_a_lake(capsys, tmp_path, directory):
    lake = tmp_path if directory == "an empty folder" else Path(directory).expanduser()
    code, out, err = run_sql(
        capsys, "--lake", str(lake), "select content from read_blob('/proc/self/environ')"
    )
    assert code == 2
    assert f"{lake} is not a lake" in err
    assert out == ""


@pytest.fixture
def planted(lake, tmp_path):
    """Files an analyst must not read: outside the lake, in the lake's root, and behind symlinks."""
    (tmp_path / "secret.txt").write_text("s3cr3t outside\n")
    (lake / "notes.txt").write_text("s3cr3t in the lake root\n")
    partition = next(EVENTS.path(lake).glob("dt=*/hr=*"))
    (partition / "part-link").symlink_to(tmp_path / "secret.txt")
    (EVENTS.path(lake) / "dt=2026-03-02").symlink_to(tmp_path)
    return partition


@pytest.mark.parametrize(
    "query",
    [
        "select content from read_blob('/proc/self/environ')",
        "select content from read_text('/etc/passwd')",
        "select content from read_text('{tmp}/secret.txt')",
        "select content from read_text('{lake}/notes.txt')",
        "select content from read_text('{lake}/events/../notes.txt')",
        "select content from read_text('{lake}/events/dt=2026-03-01/../../../secret.txt')",
        "select content from read_text('{partition}/part-link')",
        "select content from read_text('{lake}/events/dt=2026-03-02/secret.txt')",
        "select content from read_text('{lake}/*.txt')",
        "select content from read_text('{lake}/events/*/*.txt')",
        "select content from read_text('{lake}/events/**')",
        "select file from glob('{lake}/*')",
        "select file from glob('{tmp}/*')",
        "select * from read_csv('{tmp}/secret.txt')",
    ],
)
def test_the_locked_connection_reads_nothing_outside_the_lake_tables(lake, planted, tmp_path, query):
    con = analyst.open_lake(lake)
    try:
        try:
            result = repr(
                analyst.execute_read_only(con, query.format(lake=lake, tmp=tmp_path, partition=planted))
            )
        except duckdb.Error:
            result = ""  # refused (the refusal names the path, never the content)
        assert "s3cr3t" not in result and "notes.txt" not in result and "PATH=" not in result
        # ...and the lake's own tables still read (the symlinked file is not part of them)
        assert analyst.execute_read_only(con, "select count(*) from events")[1] == [(2,)]
    finally:
        con.close()


@pytest.mark.parametrize(
    "statement",
    [
        "set enable_external_access = true",
        "reset enable_external_access",
        "reset allowed_directories",
        "set allowed_directories = ['/']",
        "set allowed_paths = ['/proc/self/environ']",
        "set allowed_configs = ['enable_external_access']",
        "reset lock_configuration",
        "set temp_directory = '/'",
        "set memory_limit = '100GB'",
        "set threads = 64",
        "set autoload_known_extensions = true",
        "pragma enable_profiling",
        "pragma threads = 64",
    ],
)
def test_no_statement_widens_the_locked_connection(lake, statement):
    con = analyst.open_lake(lake, limits=analyst.AnalystLimits())
    settings = "select name, value from duckdb_settings() order by name"
    before = con.execute(settings).fetchall()
    try:
        with pytest.raises(duckdb.Error):
            con.execute(statement)  # without the statement filter: the lock alone must hold
        assert con.execute(settings).fetchall() == before
    finally:
        con.close()


# --- per-query limits and the terminal row limit (issue 11, finding 8) --------------------------------


def write_analyst_config(tmp_path, text: str) -> str:
    path = tmp_path / "usagewatch.yml"
    path.write_text("analyst:\n" + text)
    return str(path)


def test_sql_runs_under_the_configured_limits(lake, tmp_path, capsys):
    config = write_analyst_config(
        tmp_path,
        "  memory_limit: 256MiB\n  threads: 1\n  max_temp_directory_size: 1GiB\n  timeout_seconds: 30\n",
    )
    query = (
        "select current_setting('memory_limit') as memory, current_setting('threads') as threads, "
        "current_setting('max_temp_directory_size') as temp"
    )
    code, out, err = run_sql(capsys, "--lake", str(lake), "--config", config, "--format", "json", query)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"memory": "256.0 MiB", "threads": 1, "temp": "1.0 GiB"}


def test_the_default_limits_are_bounded(lake, capsys):
    query = "select current_setting('threads') as threads, current_setting('max_temp_directory_size') as temp"
    code, out, _ = run_sql(capsys, "--lake", str(lake), "--format", "json", query)
    assert code == 0
    settings = json.loads(out)
    assert settings["threads"] == analyst.AnalystLimits().threads
    assert "%" not in settings["temp"]  # not "90% of available disk space"


def test_a_runaway_query_is_interrupted_at_the_timeout(lake, tmp_path, capsys):
    config = write_analyst_config(tmp_path, "  timeout_seconds: 1\n")
    started = time.monotonic()
    code, out, err = run_sql(
        capsys, "--lake", str(lake), "--config", config, "select count(*) from range(1000000000000000)"
    )
    assert code == 1
    assert "timed out after 1 s" in err and "analyst.timeout_seconds" in err
    assert out == ""
    assert time.monotonic() - started < 30  # a full scan would take days


def test_piped_output_stops_at_the_row_limit_and_says_so(lake, capsys):
    query = "select range as n from range(1500)"
    code, out, _ = run_sql(capsys, "--lake", str(lake), query)  # stdout is not a terminal here
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 + 1000 + 1
    assert lines[-1] == "(… 1,500 rows, showing 1,000; --limit N or --all for more)"

    code, out, err = run_sql(capsys, "--lake", str(lake), "--limit", "10", "--format", "csv", query)
    assert len(out.splitlines()) == 1 + 10
    assert "1,500 rows, showing 10" in err  # the note stays off stdout, so the CSV stays clean

    code, out, err = run_sql(capsys, "--lake", str(lake), "--all", "--format", "csv", query)
    assert len(out.splitlines()) == 1 + 1500 and err == ""

    code, out, err = run_sql(capsys, "--lake", str(lake), "--limit", "0", "--format", "json", query)
    assert len(out.splitlines()) == 1500 and err == ""

    code, out, _ = run_sql(capsys, "--lake", str(lake), "--limit", "1500", query)
    assert out.splitlines()[-1] == "(1500 rows)"


# --- hostile bytes never reach the terminal raw (issue 11, finding 9) ---------------------------------


def test_control_characters_are_escaped_in_table_output(lake, capsys):
    query = (
        "select 'a' || chr(27) || '[2J' || chr(0) || chr(155) || chr(8238) || chr(8297) || 'b' as v, "
        "'tab' || chr(9) || 'new' || chr(10) || 'line' as w, 'ünïcödé 東京' as ok"
    )
    code, out, _ = run_sql(capsys, "--lake", str(lake), query)
    assert code == 0
    assert r"a\x1b[2J\x00\x9b\u202e\u2069b" in out
    assert r"tab\x09new\x0aline" in out
    assert "ünïcödé 東京" in out
    raw = [char for char in out if char != "\n" and (unicodedata.category(char) in {"Cc", "Cf"})]
    assert raw == []


def test_alert_headlines_escape_hostile_entities():
    from pipelines.incidents.alerts import headline

    alert = {
        "severity": "high", "title": "Impossible travel", "entity_type": "account",
        "entity_id": "acct\x1b]0;pwned\x07\u202e", "account_ids": ["acct"],
        "window_start": "2026-03-01T10:00:00.000Z", "window_end": "2026-03-01T10:01:00.000Z",
    }  # fmt: skip
    assert r"account acct\x1b]0;pwned\x07\u202e (1 account)" in headline(alert)


def test_signals_and_incidents_of_the_state_are_queryable_and_read_only(lake, tmp_path, capsys):
    Engine(tmp_path).run(ring_signals())
    state = str(tmp_path / "state.duckdb")

    code, out, _ = run_sql(
        capsys, "--lake", str(lake), "--state", state, "--format", "json",
        "select i.incident_id, i.account_count, len(i.account_ids) as listed, count(s.alert_id) as signals "
        "from incidents i join signals s using (incident_id) group by all",
    )  # fmt: skip

    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["account_count"] == row["listed"] == len(RING) and row["signals"] == len(ring_signals())
    code, _, err = run_sql(capsys, "--lake", str(lake), "--state", state, "delete from incidents")
    assert code == 2 and "only SELECT/WITH" in err
    with AlertStore.open(tmp_path / "state.duckdb") as store:  # released: a writer opens it at once
        assert len(store.list_incidents()) == 1


def test_without_a_state_the_signals_and_incidents_tables_are_empty(lake, tmp_path, capsys):
    code, out, _ = run_sql(
        capsys, "--lake", str(lake), "--state", str(tmp_path / "none.duckdb"),
        "select (select count(*) from signals) + (select count(*) from incidents) as n",
    )  # fmt: skip
    assert code == 0 and "(1 row)" in out and not (tmp_path / "none.duckdb").exists()


# --- what the relations and columns mean (issue 13) -------------------------------------------------


def test_every_relation_and_column_has_its_description_in_duckdb(lake, tmp_path):
    Engine(tmp_path).run(ring_signals())
    con = analyst.open_lake(lake, state_file=tmp_path / "state.duckdb")
    try:
        relations = dict(
            con.execute(
                "select view_name, comment from duckdb_views() "
                "where not internal and database_name = 'memory' "
                "union all select table_name, comment from duckdb_tables() "
                "where not internal and database_name = 'memory'"
            ).fetchall()
        )
        undescribed = con.execute(
            "select table_name || '.' || column_name from duckdb_columns() "
            "where not internal and database_name = 'memory' and comment is null"
        ).fetchall()
        columns = con.execute(
            "select table_name, column_name from duckdb_columns() "
            "where not internal and database_name = 'memory'"
        ).fetchall()
    finally:
        con.close()
    assert {"events", "account_minute", "signals", "incidents", "restricted_countries"} <= set(relations)
    assert [name for name, comment in relations.items() if not comment] == []
    assert undescribed == []
    # no description of a relation or column that does not exist (a renamed column leaves none behind)
    assert set(catalog.load_descriptions()) == set(relations)
    for path in VIEWS_DIR.glob("*.yml"):
        own = set(yaml.safe_load(path.read_text()).get("columns") or {})
        shared = path.name == catalog.SHARED_COLUMNS_FILE
        existing = {column for table, column in columns if shared or table == path.stem}
        assert own <= existing, f"{path.name} describes columns that do not exist: {own - existing}"


def test_schema_lists_relations_and_columns_with_their_descriptions(lake, capsys):
    code, out, _ = run_sql(capsys, "--lake", str(lake), "--schema")
    assert code == 0
    assert re.search(r"^events +\| view +\| 26 +\| every valid access event", out, re.MULTILINE)
    assert re.search(r"^signals +\| table +\| \d+ +\| every signal the detections raised", out, re.MULTILINE)
    watermark = r"^watermark_at_arrival +\| TIMESTAMP +\| the job's event-time watermark"
    assert re.search(watermark, out, re.MULTILINE)

    code, out, _ = run_sql(capsys, "--lake", str(lake), "--schema", "late_events")
    assert code == 0 and out.splitlines()[0] == "late_events"
    # late_events takes the event columns' descriptions from events.yml (columns_from), dt/hr from columns.yml
    assert re.search(r"^kafka_offset +\| BIGINT +\| Kafka offset of the event", out, re.MULTILINE)
    assert re.search(r"^dt +\| VARCHAR +\| UTC date partition", out, re.MULTILINE)
    assert "account_minute" not in out

    code, out, err = run_sql(capsys, "--lake", str(lake), "--schema", "nope\x1b[2J")
    assert code == 2 and r"no table or view named 'nope\x1b[2J'" in err and out == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("description: x\ncolumns:\n  a: one\n  b: [no, text]\n", r"v\.yml:4: columns\.b must be one line"),
        ("description: x\ncolums:\n  a: one\n", r"v\.yml:2: unknown key 'colums'"),
        ("columns:\n  a: one\n", r"v\.yml:1: description must be one line"),
        ("description: x\ncolumns_from: nowhere\n", r"v\.yml:2: columns_from names no other relation"),
        ("description: x\ncolumns:\n  a: one\n  a: two\n", r"v\.yml:4: invalid YAML: duplicate key 'a'"),
    ],
)
def test_a_bad_description_file_fails_naming_file_and_line(tmp_path, text, message):
    (tmp_path / "v.yml").write_text(text)
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.load_descriptions(tmp_path)
