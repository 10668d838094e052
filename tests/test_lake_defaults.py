"""Every command that takes --lake or --state defaults them to lake.path / state.path of usagewatch.yml,
relative to the configuration file: replay writes, sql and detect read, compact rewrites the same lake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.commands import cli
from pipelines.commands.job_args import lake_dir_of


def travel_event(number: int, time: str, city: tuple[str, float, float]) -> dict:
    country, latitude, longitude = city
    return {
        "event_id": f"travel-{number}", "event_time": time, "account_id": "acct-hopper",
        "api_key_id": "key-hopper", "source_ip": f"192.0.2.{number}", "country": country,
        "latitude": latitude, "longitude": longitude, "asn": 64500, "asn_type": "residential",
        "model": "model-large", "endpoint": "/v1/messages", "input_tokens": 420, "output_tokens": 900,
        "status_code": 200,
    }  # fmt: skip


# New York, then London half an hour later: impossible_travel fires.
TRAVEL = [
    travel_event(1, "2026-03-01T10:00:00.000Z", ("US", 40.71, -74.01)),
    travel_event(2, "2026-03-01T10:30:00.000Z", ("GB", 51.51, -0.13)),
]


@pytest.fixture
def travel_events(tmp_path) -> Path:
    path = tmp_path / "travel.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in TRAVEL))
    return path


def write_config(folder: Path) -> Path:
    """A configuration whose paths are relative to its own folder, as in the shipped usagewatch.yml."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "usagewatch.yml"
    path.write_text(
        "lake:\n  path: data/lake\n"
        "state:\n  path: data/state/state.duckdb\n"
        "routing:\n  sinks:\n    - {name: file, type: jsonl, path: data/routed.jsonl}\n"
        "incidents:\n  open_threshold: 1\n"
    )
    return path


def test_replay_sql_detect_and_compact_use_the_configured_lake_and_state(
    tmp_path, capsys, monkeypatch, travel_events
):
    config = write_config(tmp_path / "site")
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the configuration's folder, not here
    lake = tmp_path / "site" / "data" / "lake"

    replay = ["replay", "--input", str(travel_events), "--engine", "duckdb", "--config", str(config)]
    assert cli.main(replay) == 0
    assert (lake / "events").is_dir()
    capsys.readouterr()

    query = "select count(*) as n from events"
    assert cli.main(["sql", "--config", str(config), "--format", "json", query]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": len(TRAVEL)}

    assert cli.main(["detect", "--config", str(config), "--detection", "impossible_travel"]) == 0
    assert (tmp_path / "site" / "data" / "state" / "state.duckdb").is_file()
    capsys.readouterr()
    query = "select count(*) as n from signals where detection_id = 'impossible_travel'"
    assert cli.main(["sql", "--config", str(config), "--format", "json", query]) == 0
    assert json.loads(capsys.readouterr().out)["n"] > 0  # sql read the state detect wrote

    assert cli.main(["compact", "--config", str(config)]) == 0
    assert "compacted" in capsys.readouterr().out


def test_an_explicit_lake_wins_over_the_configuration(tmp_path, capsys):
    config = write_config(tmp_path / "site")
    assert cli.main(["sql", "--config", str(config), "--lake", str(tmp_path / "elsewhere"), "select 1"]) == 2
    assert f"lake directory {tmp_path / 'elsewhere'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sql", "detect", "compact", "replay"])
def test_a_missing_configured_lake_is_named(tmp_path, capsys, command, travel_events):
    config = write_config(tmp_path / "site")
    argv = [command, "--config", str(config)]
    if command == "replay":
        argv += ["--input", str(travel_events), "--engine", "duckdb"]
        (tmp_path / "site" / "data").mkdir()
        (tmp_path / "site" / "data" / "lake").write_text("a file where the lake should be")
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert str(tmp_path / "site" / "data" / "lake") in err


def test_a_bad_lake_path_in_the_configuration_names_file_and_line(tmp_path, capsys):
    config = tmp_path / "usagewatch.yml"
    config.write_text("state:\n  path: s.duckdb\nlake:\n  path: 42\n")
    for argv in (["sql", "select 1"], ["detect"], ["compact"]):
        assert cli.main([*argv, "--config", str(config)]) != 0
        assert f"{config}:4: lake.path must be a directory path" in capsys.readouterr().err


def test_the_streaming_commands_default_their_lake_to_the_configuration(tmp_path):
    config = write_config(tmp_path / "site")
    for argv in (["job", "start"], ["cluster", "submit"], ["cluster", "resume"]):
        args = cli.build_parser(argv[0]).parse_args([*argv, "--config", str(config)])
        assert lake_dir_of(args) == str(tmp_path / "site" / "data" / "lake")
        args = cli.build_parser(argv[0]).parse_args([*argv, "--config", str(config), "--lake", "other"])
        assert lake_dir_of(args) == "other"
