"""The exit-code policy of cli.EXPECTED_ERRORS, command group by command group: an unusable configuration
exits 2 naming the file and line, before anything is driven; a failure of what the command drives exits 1.
Both are one line on stderr, never a traceback."""

from __future__ import annotations

import pytest

from pipelines.commands import cli

# A configuration file with a YAML error on its third line.
BAD_CONFIG = "lake:\n  path: [unclosed\n"

CONFIGURED_COMMANDS = [
    ["detect"],
    ["incidents", "list"],
    ["signals", "list"],
    ["audit", "verify"],
    ["indicators", "import", "bundle.json"],
    ["sql", "select 1"],
    ["compact"],
    ["validate"],
    ["report", "--period", "daily"],
    ["schedule", "--list"],
    ["generate", "--out", "events.jsonl", "--privacy"],
]


@pytest.mark.parametrize("argv", CONFIGURED_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_an_unusable_configuration_exits_2_naming_file_and_line(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yml").write_text(BAD_CONFIG)
    assert cli.main([*argv, "--config", "bad.yml"]) == 2
    err = capsys.readouterr().err
    assert f"{argv[0]}: error: bad.yml:3: invalid YAML" in err and "Traceback" not in err


@pytest.fixture
def unopenable_state(tmp_path, monkeypatch):
    """A configuration whose lake exists and whose state database is a directory: opening it fails."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lake" / "events").mkdir(parents=True)
    (tmp_path / "state").mkdir()
    (tmp_path / "usagewatch.yml").write_text("lake:\n  path: lake\nstate:\n  path: state\n")
    return tmp_path


RUNTIME_FAILURES = [
    (["detect", "--config", "usagewatch.yml"], "cannot open the state database"),
    (["incidents", "list", "--config", "usagewatch.yml"], "cannot open the state database"),
    (["signals", "list", "--config", "usagewatch.yml"], "cannot open the state database"),
    (["sql", "--config", "usagewatch.yml", "select 1"], "cannot read the state database"),
    (["report", "--period", "daily", "--config", "usagewatch.yml"], "cannot open the state database"),
    (["replay", "--engine", "duckdb", "--input", "usagewatch.yml", "--lake", "usagewatch.yml/lake"],
     "cannot write the lake"),
    (["cluster", "jobs", "--root", "cluster", "--address", "127.0.0.1:1"], "Flink REST API at 127.0.0.1:1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"), RUNTIME_FAILURES, ids=[" ".join(argv[:2]) for argv, _ in RUNTIME_FAILURES]
)
def test_a_failure_of_what_the_command_drives_exits_1(unopenable_state, capsys, argv, message):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"{argv[0]}: error: " in err and message in err and "Traceback" not in err


def test_a_subclass_is_classified_before_its_base():
    from pipelines.detect.detections import DetectionError, RuleError

    assert cli.exit_code_of(RuleError("sql/detections/x/rule.yml:3: bad")) == cli.USAGE
    assert cli.exit_code_of(DetectionError("query failed")) == cli.FAILURE
    assert cli.exit_code_of(RuntimeError("a bug")) is None  # a traceback, not one line


@pytest.mark.parametrize("variable", ["USAGEWATCH_KAFKA_PORT", "USAGEWATCH_KAFKA_CONTROLLER_PORT"])
def test_a_port_setting_that_is_no_port_is_configuration_and_exits_2(monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, "90000")
    assert cli.main(["kafka", "status"]) == 2
    err = capsys.readouterr().err
    assert f"kafka: error: {variable}='90000' is not a TCP port" in err and "Traceback" not in err
