"""The aggregation job's own command line, for its script and for the commands that start it.

The job script (jobs/usage_aggregates.py, also what `flink run` starts on a cluster) parses its arguments
with build_job_arg_parser; `job start` and `cluster submit` declare the same stream options
(add_stream_options) and hand them over with job_argv. Kept apart from the commands so the job's
processes import only this, the job's statements and the lake layout.
"""

from __future__ import annotations

import argparse

from pipelines.commands.options import add_config, config_of
from pipelines.infra import paths
from pipelines.infra.kafka_broker import DLQ_TOPIC, EVENTS_TOPIC, bootstrap_servers
from pipelines.lake.layout import lake_path
from pipelines.stream.flink_job import JobConfig
from pipelines.stream.overrides import OVERRIDE_FLAGS, refuse_protected_option


def add_event_time_bounds(parser: argparse.ArgumentParser) -> None:
    defaults = JobConfig(lake_dir="")
    parser.add_argument(
        "--max-future-skew-s",
        type=int,
        default=defaults.max_future_skew_s,
        help="dead-letter events dated more than this after their arrival",
    )
    parser.add_argument(
        "--max-event-age-s",
        type=int,
        default=defaults.max_event_age_s,
        help="dead-letter events dated more than this before their arrival (a file arrives when written)",
    )


def add_stream_options(parser: argparse.ArgumentParser, lake_from_config: bool = False) -> None:
    """Options of a streaming run, shared by the job script, `usagewatch job start` and `cluster submit`.

    The job script is always told its lake; a command defaults it to the configuration's (lake_dir_of).
    """
    if lake_from_config:
        parser.add_argument(
            "--lake", dest="lake_dir", help="lake root directory (default: lake.path of the configuration)"
        )
        add_config(parser)
    else:
        parser.add_argument("--lake", dest="lake_dir", required=True, help="lake root directory")
    parser.add_argument("--bootstrap-servers", default=None, help="Kafka bootstrap servers")
    parser.add_argument("--topic", default=EVENTS_TOPIC)
    parser.add_argument("--dlq-topic", default=DLQ_TOPIC)
    parser.add_argument("--group-id", default="usagewatch-aggregates")
    parser.add_argument("--bounded", action="store_true", help="stop at the latest offsets seen at start")
    parser.add_argument("--checkpoint-dir", default=None, help="URI, default: <lake>/../checkpoints")
    parser.add_argument("--checkpoint-interval-s", type=int, default=10)
    parser.add_argument("--watermark-delay-s", type=int, default=10, help="allowed out-of-orderness")
    add_event_time_bounds(parser)
    parser.add_argument("--idle-timeout-s", type=int, default=30)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument(
        "--resume-from", default=None, metavar="URI", help="checkpoint or savepoint to restore from"
    )
    examples = {
        "extra_settings": "pipeline.object-reuse=true",
        "source_options": "properties.fetch.min.bytes=1048576",
        "lake_options": "parquet.block.size=67108864",
    }
    for dest, flag in OVERRIDE_FLAGS.items():
        parser.add_argument(
            flag,
            dest=dest,
            action="append",
            type=_setting_of(dest),
            default=[],
            metavar="KEY=VALUE",
            help="a Flink setting (--set) or table option over the job's own (repeatable):"
            f" {flag} {examples[dest]}; what the job's guarantees rest on is refused"
            " (pipelines/stream/overrides.py)",
        )


def _setting_of(kind: str):
    """The argparse type of one override flag: KEY=VALUE, refused at once if the job's guarantees rest on
    KEY (so `job start` and `cluster submit` fail before anything starts, not in the job's log)."""

    def setting(text: str) -> tuple[str, str]:
        key, separator, value = (part.strip() for part in text.partition("="))
        if not separator or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
        try:
            refuse_protected_option(kind, key, value)
        except ValueError as refused:
            raise argparse.ArgumentTypeError(str(refused)) from None
        return key, value

    return setting


def build_job_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usage_aggregates",
        description="usagewatch aggregation job: Kafka (or a JSONL file) -> Parquet lake + dead letters",
    )
    parser.add_argument("--source", choices=("kafka", "file"), default="kafka")
    parser.add_argument("--input", dest="input_path", help="JSONL file of access events (--source file)")
    add_stream_options(parser)
    parser.add_argument(
        "--pipeline-jars",
        choices=("auto", "none"),
        default="auto",
        help="auto: ship the locally fetched connector jars; none: the cluster's flink/lib has them",
    )
    return parser


def lake_dir_of(args: argparse.Namespace) -> str:
    """The stream options' lake: --lake, else the configuration's."""
    return args.lake_dir or str(lake_path(config_of(args)))


def job_argv(args: argparse.Namespace) -> list[str]:
    """The job script's arguments for the stream options set on `usagewatch job start`."""
    template = argparse.ArgumentParser(add_help=False)
    add_stream_options(template)
    argv = []
    for action in template._actions:
        value = getattr(args, action.dest)
        if action.required or value != action.default:
            flag = action.option_strings[0]
            if isinstance(value, list):  # --set / --source-option / --lake-option KEY=VALUE, repeated
                argv += [part for key, setting in value for part in (flag, f"{key}={setting}")]
            else:
                argv += [flag] if isinstance(value, bool) else [flag, str(value)]
    return argv


def config_from_args(args: argparse.Namespace) -> JobConfig:
    jars: tuple[str, ...] = ()
    if args.pipeline_jars == "auto":
        jars = tuple(str(jar) for jar in paths.flink_job_jars())
    return JobConfig(
        lake_dir=args.lake_dir,
        source=args.source,
        input_path=args.input_path,
        bootstrap_servers=args.bootstrap_servers or bootstrap_servers(),
        topic=args.topic,
        dlq_topic=args.dlq_topic,
        group_id=args.group_id,
        bounded=args.bounded,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_interval_s=args.checkpoint_interval_s,
        watermark_delay_s=args.watermark_delay_s,
        max_future_skew_s=args.max_future_skew_s,
        max_event_age_s=args.max_event_age_s,
        idle_timeout_s=args.idle_timeout_s,
        parallelism=args.parallelism,
        pipeline_jars=jars,
        resume_from=args.resume_from,
        extra_settings=tuple(args.extra_settings),
        source_options=tuple(args.source_options),
        lake_options=tuple(args.lake_options),
    )
