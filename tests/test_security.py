"""Least privilege and secrets (SECURITY.md): read-only analysts, bound parameters, secrets only from
the environment, and pseudonymisation that leaves the detections working."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import duckdb
import pytest
import yaml
from lakefixture import write_events

from pipelines.detect.detections import run_detections
from pipelines.incidents.alert_state import AlertStore
from pipelines.incidents.routing import RoutingError, load_router
from pipelines.infra.config import DEFAULT_CONFIG, ConfigError, load_config
from pipelines.infra.paths import SQL_DIR
from pipelines.lake import analyst
from pipelines.stream.privacy import Privacy, PrivacyError, load_privacy, pseudonymise, truncate_ip
from pipelines.traffic.generator import GeneratorConfig, generate_events

EVENT = {
    "event_id": "e-1", "event_time": "2026-03-01T10:00:00.123Z", "account_id": "acct-1",
    "api_key_id": "key-1", "source_ip": "192.0.2.1", "country": "DE", "input_tokens": 10,
}  # fmt: skip
PEPPER = "a-test-pepper-of-enough-bytes"

TRAVEL_POSITIVE = SQL_DIR / "detections" / "impossible_travel" / "positive.jsonl"


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    write_events(tmp_path / "lake", [EVENT])
    return tmp_path / "lake"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usagewatch.yml"
    path.write_text(text)
    return path


# --- analysts read, never write ----------------------------------------------------------------------


# test_analyst.py covers CREATE, COPY ... TO, ATTACH, INSTALL through `usagewatch sql`; these are the
# remaining ways to write or escape, refused before they reach DuckDB.
@pytest.mark.parametrize(
    "query",
    [
        "copy events to '{lake}/events/dt=2026-03-01/hr=10/part-planted'",
        "export database '{tmp}/dump'",
        "create macro leak() as 1",
        "create secret s (type s3, key_id 'k', secret 'v')",
        "detach memory",
        "checkpoint",
        "call pragma_version()",
        "update events set account_id = 'x'",
    ],
)
def test_analyst_statements_that_write_or_escape_are_refused(lake, tmp_path, query):
    con = analyst.open_lake(lake)
    try:
        with pytest.raises(analyst.ReadOnlyViolation):
            analyst.execute_read_only(con, query.format(lake=lake, tmp=tmp_path))
    finally:
        con.close()
    assert not (tmp_path / "dump").exists()
    assert sorted(path.name for path in lake.rglob("part-*")) == ["part-fixture-0"]


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("attach '{tmp}/other.duckdb' as other", duckdb.PermissionException),
        ("install httpfs", duckdb.PermissionException),
        ("load httpfs", duckdb.PermissionException),
        ("copy (select 1) to '{tmp}/leak.csv'", duckdb.PermissionException),
        ("select * from glob('/etc/*')", duckdb.PermissionException),
        ("select * from duckdb_secrets()", duckdb.PermissionException),
        ("select getenv('USAGEWATCH_PEPPER')", duckdb.CatalogException),  # no way to read secrets via SQL
        ("set lock_configuration = false", duckdb.Error),
    ],
)
def test_locked_connection_refuses_even_without_the_statement_filter(lake, tmp_path, statement, error):
    con = analyst.open_lake(lake)
    try:
        with pytest.raises(error):
            con.execute(statement.format(tmp=tmp_path))
    finally:
        con.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lake"]


# --- user values reach SQL as data -------------------------------------------------------------------


def test_a_hostile_lake_path_is_data_not_sql(tmp_path):
    # A directory name is user input that must sit inside generated view SQL (DuckDB cannot bind
    # parameters in a view definition), so it is quoted as a literal.
    lake_dir = tmp_path / "lake'); attach 'planted.duckdb' as p; select ('"
    write_events(lake_dir, [EVENT])
    con = analyst.open_lake(lake_dir)
    try:
        assert analyst.execute_read_only(con, "select account_id from events")[1] == [("acct-1",)]
        assert con.execute(
            "select count(*) from duckdb_databases() where database_name = 'p'"
        ).fetchone() == (0,)
    finally:
        con.close()
    assert not list(Path.cwd().glob("planted.duckdb")) and not list(tmp_path.rglob("planted.duckdb"))


def test_analyst_query_parameters_are_bound(lake):
    con = analyst.open_lake(lake)
    try:
        hostile = "acct-1' or '1'='1"
        query = "select count(*) from events where account_id = $account"
        assert analyst.execute_read_only(con, query, {"account": hostile})[1] == [(0,)]
        assert analyst.execute_read_only(con, query, {"account": "acct-1"})[1] == [(1,)]
    finally:
        con.close()


def test_alert_filters_from_the_command_line_are_bound(tmp_path):
    with AlertStore.open(tmp_path / "state.duckdb") as store:
        assert store.list_alerts(detection_id="x' or '1'='1", status="open' or '1'='1") == []
        assert store.con.execute("select count(*) from information_schema.tables").fetchone()[0] > 0


# --- secrets only from the environment ---------------------------------------------------------------

_SECRET_WORDS = re.compile(r"(url|token|key|secret|password|pepper|webhook)", re.IGNORECASE)


def _keys(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, str(key)), value
            yield from _keys(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _keys(item, (*path, str(index)))


def test_the_shipped_configuration_holds_no_secret_values():
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    secret_like = [path for path, _ in _keys(data) if _SECRET_WORDS.search(path[-1])]
    assert all(path[-1].endswith("_env") for path in secret_like), secret_like


@pytest.mark.parametrize(
    ("sink", "unknown_key"),
    [
        ("{name: s, type: slack, webhook_url: 'https://hooks.example/T/B/x'}", "webhook_url"),
        ("{name: p, type: pagerduty, routing_key: 'abc123'}", "routing_key"),
    ],
)
def test_literal_secrets_in_routing_are_rejected_naming_the_line(tmp_path, sink, unknown_key):
    path = write_config(tmp_path, f"lake:\n  path: lake\nrouting:\n  sinks:\n    - {sink}\n")
    with pytest.raises(ConfigError, match=rf"usagewatch\.yml:3: .*unknown key\(s\) \['{unknown_key}'\]"):
        load_router(load_config(str(path)))


def test_a_missing_secret_names_the_variable_and_a_set_one_is_used(tmp_path, monkeypatch):
    path = write_config(
        tmp_path, "routing:\n  sinks:\n    - {name: s, type: slack, webhook_url_env: UW_TEST_SLACK_URL}\n"
    )
    monkeypatch.delenv("UW_TEST_SLACK_URL", raising=False)
    with pytest.raises(RoutingError, match="UW_TEST_SLACK_URL"):
        load_router(load_config(str(path)))
    monkeypatch.setenv("UW_TEST_SLACK_URL", "https://hooks.example/services/T/B/secret-token")
    assert load_router(load_config(str(path))).trigger_sinks("high") == ["s"]


def test_the_pepper_comes_only_from_the_environment(tmp_path, monkeypatch):
    literal = write_config(tmp_path, f"privacy:\n  pseudonymise_api_key_id: true\n  pepper: {PEPPER}\n")
    with pytest.raises(
        ConfigError, match=r"usagewatch\.yml:3: privacy\.pepper: secrets never go in the file"
    ):
        load_privacy(load_config(str(literal)))

    from_env = write_config(
        tmp_path, "privacy:\n  pseudonymise_api_key_id: true\n  pepper_env: UW_TEST_PEPPER\n"
    )
    monkeypatch.delenv("UW_TEST_PEPPER", raising=False)
    with pytest.raises(PrivacyError, match="UW_TEST_PEPPER .*is not set"):
        load_privacy(load_config(str(from_env)))
    monkeypatch.setenv("UW_TEST_PEPPER", "short")
    with pytest.raises(PrivacyError, match="shorter than 16 bytes") as refused:
        load_privacy(load_config(str(from_env)))
    assert "short" not in str(refused.value).replace("shorter", "")  # the value itself is never echoed
    monkeypatch.setenv("UW_TEST_PEPPER", PEPPER)
    privacy = load_privacy(load_config(str(from_env)))
    assert privacy.pepper == PEPPER.encode() and PEPPER not in repr(privacy)


# --- pseudonymisation that detections survive --------------------------------------------------------


def test_pseudonyms_are_keyed_and_deterministic():
    assert pseudonymise("key-1", b"p" * 16) == pseudonymise("key-1", b"p" * 16)
    assert pseudonymise("key-1", b"p" * 16) != pseudonymise("key-2", b"p" * 16)
    assert pseudonymise("key-1", b"p" * 16) != pseudonymise("key-1", b"q" * 16)  # needs the pepper
    assert "key-1" not in pseudonymise("key-1", b"p" * 16)


@pytest.mark.parametrize(
    ("address", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2a01:4f8:10a:1::2", "2a01:4f8:10a::"),
        ("not-an-ip", "not-an-ip"),  # left for the parser to dead-letter with its reason
    ],
)
def test_addresses_keep_only_their_network_prefix(address, truncated):
    assert truncate_ip(address, 24, 48) == truncated


def test_detections_still_fire_on_pseudonymised_events(tmp_path):
    config = GeneratorConfig(
        seed=11, accounts=60, hydra_accounts=30, start=dt.datetime(2026, 11, 27, 8, tzinfo=dt.UTC),
        duration=dt.timedelta(minutes=30),
    )  # fmt: skip
    events = list(generate_events(config))
    privacy = Privacy(pepper=PEPPER.encode(), ipv4_prefix=24, ipv6_prefix=48)
    private = [privacy.apply(event) for event in events]
    assert all(event["api_key_id"].startswith("pk-") for event in private)
    write_events(tmp_path / "raw", events)
    write_events(tmp_path / "private", private)

    def outcome(lake_dir: Path):
        con = analyst.open_lake(lake_dir)
        try:
            alerts = run_detections(con, now=config.start)
            key_shape = con.execute(
                "select count(distinct api_key_id), count(distinct (account_id, api_key_id)) from events"
            ).fetchone()
        finally:
            con.close()
        by_detection: dict[str, set[str]] = {}
        for alert in alerts:
            by_detection.setdefault(alert["detection_id"], set()).add(alert["entity_id"])
        return by_detection, key_shape

    raw_alerts, raw_keys = outcome(tmp_path / "raw")
    private_alerts, private_keys = outcome(tmp_path / "private")
    # api keys still join: the same keys, used by the same accounts
    assert private_keys == raw_keys
    # the /24 and /48 infrastructure detection sees exactly the same subnets
    assert raw_alerts["shared_subnet_infrastructure"]
    assert private_alerts["shared_subnet_infrastructure"] == raw_alerts["shared_subnet_infrastructure"]
    # and no detection that fired on the raw events goes silent
    assert set(private_alerts) >= set(raw_alerts)


# --- the audit log follows the state database (issue 11, finding 10) -------------------------------


def test_state_override_carries_the_audit_log_with_it(tmp_path):
    from lakefixture import read_jsonl

    from pipelines.commands import cli
    from pipelines.incidents import audit

    write_events(tmp_path / "lake", read_jsonl(TRAVEL_POSITIVE))
    # Like the shipped configuration: a state path, no explicit audit_log.
    config = write_config(
        tmp_path,
        "state:\n  path: state/state.duckdb\n"
        "routing:\n  sinks:\n    - {name: f, type: jsonl, path: r.jsonl}\n",
    )
    elsewhere = tmp_path / "elsewhere" / "state.duckdb"
    elsewhere.parent.mkdir()

    code = cli.main(
        ["detect", "--lake", str(tmp_path / "lake"), "--config", str(config), "--state", str(elsewhere)]
    )

    assert code == 0
    records = read_jsonl(elsewhere.parent / "audit.jsonl")
    assert [record["kind"] for record in records].count("signal") == 2
    assert not (tmp_path / "state").exists() and not (tmp_path / ".run").exists()
    assert cli.main(["audit", "verify", "--config", str(config), "--state", str(elsewhere)]) == 0
    # Without --state the log sits beside the configured state database; an explicit audit_log wins.
    assert audit.audit_log_path(load_config(str(config))) == tmp_path / "state" / "audit.jsonl"
    assert audit.audit_log_path(load_config(), elsewhere) == elsewhere.parent / "audit.jsonl"
    explicit = write_config(tmp_path, "state:\n  path: s.duckdb\n  audit_log: logs/a.jsonl\n")
    assert audit.audit_log_path(load_config(str(explicit)), elsewhere) == tmp_path / "logs" / "a.jsonl"


# --- one bad file does not blind the lake (issue 11, finding 9) --------------------------------------


def _break(path: Path, fault: str) -> None:
    good = path.read_bytes()
    if fault == "foreign":
        path.write_bytes(b'{"not": "parquet"}\n')
    elif fault == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:  # a corrupt footer: its length field points before the start of the file
        path.write_bytes(good[:-8] + (2**31 - 1).to_bytes(4, "little") + b"PAR1")


@pytest.mark.parametrize("fault", ["foreign", "truncated", "corrupt"])
def test_a_bad_lake_file_is_named_and_skipped_and_the_rest_stays_queryable(tmp_path, capsys, fault):
    from lakefixture import FIXTURE_FILE_NAME, read_jsonl

    from pipelines.commands import cli
    from pipelines.lake import layout as lake

    events = read_jsonl(TRAVEL_POSITIVE)
    lake_dir = tmp_path / "lake"
    [first, *_] = write_events(lake_dir, events)
    bad = first.parent / "part-bad-0"
    bad.write_bytes(first.read_bytes())
    _break(bad, fault)
    config = write_config(
        tmp_path,
        f"lake:\n  path: {lake_dir}\nstate:\n  path: state/state.duckdb\n"
        f"quality:\n  results_dir: {tmp_path / 'quality'}\n"
        "routing:\n  sinks:\n    - {name: f, type: jsonl, path: routed.jsonl}\n",
    )

    [unreadable] = lake.unreadable_files(lake_dir)
    assert unreadable.path == bad and "not a readable Parquet file" in unreadable.reason

    assert (
        cli.main(["sql", "--lake", str(lake_dir), "--format", "json", "select count(*) as n from events"])
        == 0
    )
    out, err = capsys.readouterr()
    assert json.loads(out) == {"n": len(events)}
    assert f"warning: skipped {bad}: not a readable Parquet file" in err

    assert cli.main(["detect", "--lake", str(lake_dir), "--config", str(config)]) == 0
    assert "signals: 2 new" in capsys.readouterr().out

    # validate records a data-quality finding naming the file: a signal whose incident is routed at once
    assert cli.main(["validate", "--config", str(config), "--table", "events"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "part-bad-0" in out
    partition = f"events/{first.parent.parent.name}/{first.parent.name}"
    routed = read_jsonl(tmp_path / "routed.jsonl")
    [incident] = [i for i in routed if {"type": "partition", "id": partition} in i["entities"]]
    from pipelines.incidents.alert_state import AlertStore
    from pipelines.quality.gates import DATA_QUALITY_DETECTION

    with AlertStore.open(tmp_path / "state" / "state.duckdb") as store:
        found = [json.loads(r["alert"]) for r in store.list_alerts(detection_id=DATA_QUALITY_DETECTION)]
    [signal] = [s for s in found if s["evidence"]["suite"] == "parquet_files_readable"]
    assert signal["entity_id"] == partition and signal["alert_id"] in json.dumps(incident["evidence"])
    assert str(bad) in json.dumps(signal["evidence"])
    assert FIXTURE_FILE_NAME not in json.dumps(signal["evidence"]["failing_expectations"])
    # ...and until the file is fixed or removed, detections over that hour are marked degraded
    from pipelines.quality.gates import partition_health

    health = {
        (item.dt, item.hr): item for item in partition_health(tmp_path / "state" / "state.duckdb", lake_dir)
    }
    faulty = health[(first.parent.parent.name[3:], first.parent.name[3:])]
    assert faulty.status == "failed" and "parquet_files_readable: part-bad-0" in faulty.failing
