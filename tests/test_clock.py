"""One duration grammar and one moment parser for every command and setting."""

import datetime as dt

import pytest

from pipelines.commands import cli
from pipelines.infra.clock import naive_utc, parse_duration, parse_moment


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("30m", 1800), ("1.5h", 5400), ("1h30m", 5400), ("7d", 604800), ("90", 90), (" 2H ", 7200)],
)
def test_durations_of_every_former_grammar_are_accepted(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "m", "-5m", "0m", "0", "2 weeks", "1h 30m", "5x", ""])
def test_nonsense_durations_are_rejected_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_moments_are_utc_times_or_that_long_ago():
    now = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert parse_moment("24h", now) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert parse_moment("2026-03-01T10:00") == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    assert parse_moment("2026-03-01T11:00+01:00") == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="neither a time"):
        parse_moment("yesterday")


def test_naive_utc_converts_offsets_and_keeps_naive_values():
    assert naive_utc(dt.datetime(2026, 3, 1, 11, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == dt.datetime(
        2026, 3, 1, 10
    )
    assert naive_utc(dt.datetime(2026, 3, 1, 10)) == dt.datetime(2026, 3, 1, 10)


def test_a_bad_duration_on_the_command_line_names_the_accepted_forms(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate", "--duration", "soon"])
    assert exit_info.value.code == 2
    assert "is not a duration like 60s" in capsys.readouterr().err
