"""`usagewatch detections list|lint|test`: the detection catalogue as code (pipelines/detect/catalog.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.detect import catalog
from pipelines.detect.detections import DETECTIONS_DIR, RuleError, load_detections
from pipelines.infra.rendering import format_table


def run_list(args: argparse.Namespace) -> int:
    try:
        detections = load_detections()
    except RuleError as error:  # the first problem; lint lists them all
        raise RuleError(f"{error} (usagewatch detections lint lists every problem)") from error
    columns = ["detection", "severity", "maturity", "version", "enabled", "techniques"]
    print(format_table(columns, catalog.catalogue_rows(detections)))
    return 0


def run_lint(args: argparse.Namespace) -> int:
    problems = catalog.lint_catalogue(args.rules)
    for name, found in problems.items():
        if found or name != "catalogue":
            print(f"{name}: {'ok' if not found else 'FAILED'}")
        for problem in found:
            print(f"  {problem}")
    failed = sum(1 for found in problems.values() if found)
    print(
        f"{len(problems) - 1} rule(s) linted; {failed} with problems"
        if failed
        else f"{len(problems) - 1} rule(s) clean"
    )
    return 1 if failed else 0


def run_test(args: argparse.Namespace) -> int:
    results, broken = catalog.run_catalogue_tests(args.detection, args.rules)
    for result in results:
        print(result.describe())
    for error in broken:
        print(f"cannot load: {error}")
    failed = sum(1 for result in results if not result.ok) + len(broken)
    print(f"{len(results)} fixture run(s), {failed} failed")
    return 1 if failed else 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "detections",
        help="list, lint and test the detection rules (sql/detections/<id>/)",
        description="The detection catalogue as code. list: id, severity, maturity, version and ATT&CK / "
        "ATLAS techniques of every rule. lint: every rule.yml against schemas/detection.schema.json, every "
        "query parsed and bound on an empty lake, every evidence schema against its query's columns and "
        "the others' types, fixtures present. test: every rule on its positive and negative fixtures. "
        "lint and test exit 1 on any failure.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="one line per rule").set_defaults(func=run_list)
    lint = actions.add_parser("lint", help="check every rule without running it on data")
    test = actions.add_parser("test", help="run every rule's fixtures")
    test.add_argument("--detection", action="append", metavar="NAME", help="only this rule (repeatable)")
    for action, handler in ((lint, run_lint), (test, run_test)):
        action.add_argument(
            "--rules",
            type=Path,
            default=DETECTIONS_DIR,
            metavar="DIR",
            help="folder of rule folders (default: sql/detections; try a rule in development elsewhere)",
        )
        action.set_defaults(func=handler)
