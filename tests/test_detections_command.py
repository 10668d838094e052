"""`usagewatch detections list|lint|test`: the catalogue as code, with exit codes a CI job can gate on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.commands import cli
from pipelines.detect.detections import DETECTIONS_DIR, rule_folders

# Small fixtures, so the command's test runs stay quick.
RULE = "shared_payment_fingerprint"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """A catalogue of one shipped rule, to break in each test."""
    shutil.copytree(DETECTIONS_DIR / RULE, tmp_path / "rules" / RULE)
    return tmp_path / "rules"


def test_list_shows_every_rule_with_its_maturity_and_techniques(capsys):
    assert cli.main(["detections", "list"]) == 0
    printed = capsys.readouterr().out
    for folder in rule_folders():
        assert folder.name in printed
    line = next(line for line in printed.splitlines() if line.startswith("extraction_profile "))
    assert "stable" in line and "AML.T0024.002" in line and "T1119" in line


def test_lint_passes_the_shipped_catalogue(capsys):
    assert cli.main(["detections", "lint"]) == 0
    assert f"{len(rule_folders())} rule(s) clean" in capsys.readouterr().out


def test_lint_fails_naming_the_file_line_and_every_broken_rule(rules, capsys):
    shutil.copytree(DETECTIONS_DIR / "country_hopping", rules / "country_hopping")
    rule_yml = rules / RULE / "rule.yml"
    rule_yml.write_text(rule_yml.read_text().replace("    - T1585  #", "    - T9999  #"))
    line = next(number for number, text in enumerate(rule_yml.read_text().splitlines(), 1) if "T9999" in text)
    (rules / "country_hopping" / "evidence.schema.json").unlink()

    assert cli.main(["detections", "lint", "--rules", str(rules)]) == 1

    printed = capsys.readouterr().out
    assert f"{rule_yml}:{line}: techniques.attack: T9999 is not in techniques.json" in printed
    assert "country_hopping: FAILED" in printed and "evidence.schema.json: No such file" in printed
    assert "2 rule(s) linted; 2 with problems" in printed


def test_test_runs_the_fixtures_and_fails_on_an_unexpected_signal(rules, capsys):
    assert cli.main(["detections", "test", "--rules", str(rules)]) == 0
    assert "2 fixture run(s), 0 failed" in capsys.readouterr().out

    expected = rules / RULE / "expected.yml"
    expected.write_text(expected.read_text().replace("severity: medium", "severity: high"))

    assert cli.main(["detections", "test", "--rules", str(rules)]) == 1
    printed = capsys.readouterr().out
    assert f"{RULE} positive: FAILED" in printed and "expected.yml differs" in printed
    assert "2 fixture run(s), 1 failed" in printed


def test_test_refuses_an_unknown_rule(capsys):
    assert cli.main(["detections", "test", "--detection", "no_such_rule"]) == 2
    assert "unknown detection(s) ['no_such_rule']" in capsys.readouterr().err
