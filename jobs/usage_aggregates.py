"""PyFlink entry point of the aggregation job.

Locally:  python jobs/usage_aggregates.py --source kafka --lake lake   (embedded MiniCluster)
Cluster:  flink run -py jobs/usage_aggregates.py --pyFiles pipelines -- --pipeline-jars none --lake ...
The statements themselves live in pipelines/stream/flink_job.py, where they are unit tested without a JVM.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# `python jobs/usage_aggregates.py` puts jobs/ first on sys.path; the library sits beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyflink.common import Configuration  # noqa: E402
from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402

from pipelines.commands.job_args import build_job_arg_parser, config_from_args  # noqa: E402
from pipelines.infra.logs import configure_logging  # noqa: E402
from pipelines.stream.flink_job import flink_configuration, size_minicluster_jvm, statements  # noqa: E402

logger = logging.getLogger("usagewatch.job")


def build_arg_parser():
    return build_job_arg_parser()


def main(argv: list[str] | None = None) -> None:
    # The job runs for days (job.log of `usagewatch job start`): JSON lines, like the other services.
    configure_logging(json_lines=True)
    config = config_from_args(build_arg_parser().parse_args(argv))
    # Before the first PyFlink object (Configuration included) starts the gateway JVM, which locally is
    # the MiniCluster itself.
    size_minicluster_jvm(os.environ)
    settings = Configuration()
    for key, value in flink_configuration(config).items():
        settings.set_string(key, value)
    environment = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(settings).build()
    table_env = TableEnvironment.create(environment)

    ddl, inserts = statements(config)
    for statement in ddl:
        table_env.execute_sql(statement)
    statement_set = table_env.create_statement_set()
    for insert in inserts:
        statement_set.add_insert_sql(insert)
    result = statement_set.execute()
    job_client = result.get_job_client()
    job_id = str(job_client.get_job_id())
    logger.info(
        f"usagewatch-aggregates submitted as job {job_id}", extra={"fields": {"flink_job_id": job_id}}
    )
    # `flink run --detached` hands the job to the cluster: the client must not stay to watch it.
    if table_env.get_config().get("execution.attached", "true").lower() == "true":
        # Bounded sources finish on their own; a streaming job runs until it is stopped.
        result.wait()


if __name__ == "__main__":
    main()
