"""Logging: levels through --quiet/--verbose, JSON lines for services, stderr only, secrets redacted."""

from __future__ import annotations

import json
import logging

import pytest

from pipelines.commands import cli
from pipelines.infra import redaction
from pipelines.infra.logs import configure_logging

logger = logging.getLogger("pipelines.test_logs")


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    configure_logging()


def test_json_lines_carry_level_logger_message_and_fields(capsys):
    configure_logging(json_lines=True)
    logger.info("cycle done", extra={"fields": {"cycle": 3, "message": "not allowed to replace"}})
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays the command's result
    [line] = err.splitlines()
    record = json.loads(line)
    assert record["level"] == "info" and record["logger"] == "pipelines.test_logs"
    assert record["message"] == "cycle done" and record["cycle"] == 3
    assert record["ts"].endswith("+00:00")


@pytest.mark.parametrize(("verbosity", "shown"), [("quiet", {"WARNING"}), ("normal", {"INFO", "WARNING"}),
                                                  ("verbose", {"DEBUG", "INFO", "WARNING"})])  # fmt: skip
def test_verbosity_sets_the_level(capsys, verbosity, shown):
    configure_logging(verbosity)
    logger.debug("detail")
    logger.info("progress")
    logger.warning("trouble")
    err = capsys.readouterr().err
    assert {level for level in ("DEBUG", "INFO", "WARNING") if f" {level} " in err} == shown


def test_libraries_info_chatter_stays_out_and_their_warnings_do_not(capsys):
    configure_logging("verbose")
    library = logging.getLogger("great_expectations._docs_decorators")
    library.info("Skipping registering function get_context")
    library.warning("a library warning")
    err = capsys.readouterr().err
    assert "Skipping registering" not in err and "a library warning" in err


def test_the_handler_writes_to_the_current_stderr_not_the_one_at_configuration(capsys):
    configure_logging()
    capsys.readouterr()
    with capsys.disabled():
        pass  # the capture's stream is replaced between phases; the handler must follow sys.stderr
    logger.warning("after reconfiguration of stderr")
    assert "after reconfiguration of stderr" in capsys.readouterr().err


def test_command_line_quiet_and_log_format(tmp_path, capsys):
    # `generate` logs nothing at warning level on success; --log-format json is accepted by every command
    out = tmp_path / "events.jsonl"
    assert cli.main(["generate", "--accounts", "120", "--duration", "2m", "--out", str(out), "--quiet",
                     "--log-format", "json"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert all(json.loads(line)["level"] in ("warning", "error") for line in err.splitlines())


def test_long_running_commands_default_to_json_lines_and_others_to_text():
    detect_every = cli.build_parser("detect").parse_args(["detect", "--every", "60s"])
    detect_once = cli.build_parser("detect").parse_args(["detect"])
    schedule = cli.build_parser("schedule").parse_args(["schedule"])
    schedule_list = cli.build_parser("schedule").parse_args(["schedule", "--list"])
    forced_text = cli.build_parser("detect").parse_args(["detect", "--every", "60s", "--log-format", "text"])
    assert cli.wants_json_lines(detect_every) and cli.wants_json_lines(schedule)
    assert not cli.wants_json_lines(detect_once) and not cli.wants_json_lines(schedule_list)
    assert not cli.wants_json_lines(forced_text)


def test_a_secret_in_a_log_message_is_redacted(capsys):
    secret = "xoxb-very-secret-slack-token-123456"
    redaction.register_secret(secret)
    configure_logging(json_lines=True)
    with redaction.redacted_output():
        logger.warning(f"delivery to https://hooks.example/{secret} failed")
    err = capsys.readouterr().err
    assert secret not in err and "delivery to" in err
