"""Entry point of the compliance-summary job, for cron, systemd timers or a container command.

    python jobs/compliance_summary.py --period daily [--date YYYY-MM-DD] [--out DIR]

Same options as `usagewatch report`; the work lives in pipelines/reports/report.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python jobs/compliance_summary.py` puts jobs/ first on sys.path; the library sits beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.commands.cli import main as usagewatch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return usagewatch(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
