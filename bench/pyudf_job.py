"""Variant (b): the project's aggregation job with the parse as a per-event Python UDF.

Runs jobs/usage_aggregates.py's main unchanged, with two substitutions: the statements register
bench.pyudf.parse_access_event (language python) in place of the Java UDF, and the configuration
names this interpreter for the Python workers. Everything else (source, views, windows, sinks,
checkpointing) is the project's own SQL, the source's watermark included: its watermark_time still asks
the Java parser for each record's verdict, so this variant now parses every record in Java as well as in
Python. Needs the repository root on PYTHONPATH (for the workers).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import usage_aggregates  # noqa: E402
from pipelines.stream import flink_job  # noqa: E402

JAVA_PARSE_DDL = flink_job.FUNCTION_DDL[1]
PYTHON_PARSE_DDL = (
    "create temporary system function parse_access_event as 'bench.pyudf.parse_access_event' language python"
)


def statements_with_python_parse(config: flink_job.JobConfig) -> tuple[list[str], list[str]]:
    ddl, inserts = flink_job.statements(config)
    if JAVA_PARSE_DDL not in ddl:
        raise RuntimeError("pipelines.stream.flink_job no longer registers parse_access_event as expected")
    return [PYTHON_PARSE_DDL if statement == JAVA_PARSE_DDL else statement for statement in ddl], inserts


def configuration_with_python_workers(config: flink_job.JobConfig) -> dict[str, str]:
    return {
        **flink_job.flink_configuration(config),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
    }


if __name__ == "__main__":
    usage_aggregates.statements = statements_with_python_parse
    usage_aggregates.flink_configuration = configuration_with_python_workers
    usage_aggregates.main()
