"""What-if variant of (a): the project's job with Flink's object reuse on (`pipeline.object-reuse`).

The profile of (a) shows the source task copying every row once per downstream branch (Flink's
CopyingChainingOutput, used when object reuse is off); this measures what turning that off buys.
Everything else is jobs/usage_aggregates.py unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import usage_aggregates  # noqa: E402
from pipelines.stream import flink_job  # noqa: E402


def configuration_with_object_reuse(config: flink_job.JobConfig) -> dict[str, str]:
    return {**flink_job.flink_configuration(config), "pipeline.object-reuse": "true"}


if __name__ == "__main__":
    usage_aggregates.flink_configuration = configuration_with_object_reuse
    usage_aggregates.main()
