"""The analyst layer: views over the lake, and the read-only `usagewatch sql` command."""

from __future__ import annotations

import argparse
import csv
import io
import json

import duckdb
import pytest
from lakefixture import write_events

from pipelines import analyst
from pipelines.lake import EVENTS, TABLES

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
    parser = argparse.ArgumentParser()
    analyst.add_parser(parser.add_subparsers())
    args = parser.parse_args(["sql", *argv])
    code = args.func(args)
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
