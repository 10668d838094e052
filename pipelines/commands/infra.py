"""`usagewatch kafka` (the local single-node broker) and `usagewatch cluster` (a Flink session cluster and a
3-broker Kafka on this machine). Their expected failures (BrokerError, ClusterError, KafkaError) become one
line and exit code 1 through cli.main's exit-code policy."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.commands.job_args import add_stream_options, build_job_arg_parser, job_argv, lake_dir_of
from pipelines.commands.options import UsageError
from pipelines.infra.cluster import (
    CLUSTER_RUN_DIR,
    JOB_NAME,
    START_TIMEOUT_S,
    ClusterSpec,
    _overview_or_none,
    cancel,
    down,
    jobs,
    latest_savepoint,
    running_job_id,
    saved_spec,
    status,
    stop_with_savepoint,
    submit,
    up,
)
from pipelines.infra.kafka_broker import (
    BROKER_PORT_ENV,
    DEFAULT_BROKER_PORT,
    HOST,
    PROJECT_TOPICS,
    STOP_TIMEOUT_S,
    bootstrap_servers,
    ensure_topics,
    start,
    stop,
)
from pipelines.infra.kafka_broker import (
    START_TIMEOUT_S as BROKER_START_TIMEOUT_S,
)
from pipelines.infra.kafka_broker import status as broker_status


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Both groups: cli imports this module for either command."""
    _add_kafka_parser(subparsers)
    _add_cluster_parser(subparsers)


# --- kafka -----------------------------------------------------------------------------------------


def _kafka_start(args: argparse.Namespace) -> int:
    result = start(timeout=args.timeout)
    if result.already_running:
        print(f"kafka: already running (pid {result.pid}) on {result.bootstrap}")
    else:
        print(f"kafka: started (pid {result.pid}) on {result.bootstrap} in {result.seconds:.1f} s")
    return 0


def _kafka_stop(args: argparse.Namespace) -> int:
    pid = stop(timeout=args.timeout)
    print(f"kafka: stopped (pid {pid})" if pid is not None else "kafka: not running")
    return 0


def _kafka_status(args: argparse.Namespace) -> int:
    current = broker_status()
    if current.running:
        print(f"kafka: running (pid {current.pid}) on {current.bootstrap}")
        return 0
    print(f"kafka: stopped (would listen on {current.bootstrap})")
    # LSB convention: 3 = not running, so scripts can test the state.
    return 3


def _kafka_topics(args: argparse.Namespace) -> int:
    ensure_topics(args.bootstrap or bootstrap_servers(), PROJECT_TOPICS)
    for name, partitions in PROJECT_TOPICS.items():
        print(f"kafka: topic {name} ({partitions} partition{'s' if partitions > 1 else ''}) ready")
    return 0


def _add_kafka_parser(subparsers: argparse._SubParsersAction) -> None:
    kafka = subparsers.add_parser("kafka", help="run the local single-node Kafka broker (KRaft)")
    actions = kafka.add_subparsers(dest="kafka_command", required=True)

    start_parser = actions.add_parser("start", help="start the broker (no-op if already running)")
    start_parser.add_argument(
        "--timeout",
        type=float,
        default=BROKER_START_TIMEOUT_S,
        help="seconds to wait for the broker to answer (default %(default)s)",
    )
    start_parser.set_defaults(func=_kafka_start)

    stop_parser = actions.add_parser("stop", help="stop the broker started by `kafka start`")
    stop_parser.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        help="seconds to wait after SIGTERM before SIGKILL (default %(default)s)",
    )
    stop_parser.set_defaults(func=_kafka_stop)

    status_parser = actions.add_parser(
        "status", help="running/stopped, pid and bootstrap address (exit code 3 when stopped)"
    )
    status_parser.set_defaults(func=_kafka_status)

    topics_parser = actions.add_parser(
        "topics", help=f"create {', '.join(PROJECT_TOPICS)} if missing (idempotent)"
    )
    topics_parser.add_argument(
        "--bootstrap",
        help=f"broker address (default {HOST}:${BROKER_PORT_ENV} or {HOST}:{DEFAULT_BROKER_PORT})",
    )
    topics_parser.set_defaults(func=_kafka_topics)


# --- cluster ---------------------------------------------------------------------------------------


def cluster_job_args(args: argparse.Namespace, spec: ClusterSpec) -> list[str]:
    """The job script's arguments: the stream options given, cluster defaults for Kafka and checkpoints."""
    # The job's processes do not share our working directory: the lake path must be absolute.
    args.lake_dir = str(Path(lake_dir_of(args)).resolve())
    args.bootstrap_servers = args.bootstrap_servers or spec.bootstrap_servers
    args.checkpoint_dir = args.checkpoint_dir or spec.checkpoint_dir
    # The connector and UDF jars are on the cluster's classpath (lib/), as in the Docker image.
    job_args = ["--source", "kafka", *job_argv(args), "--pipeline-jars", "none"]
    build_job_arg_parser().parse_args(job_args)  # a bad option fails here, not in the cluster
    return job_args


def _spec_from_args(args: argparse.Namespace) -> ClusterSpec:
    root = Path(args.root).resolve() if args.root else CLUSTER_RUN_DIR
    return saved_spec(root)


def _cmd_up(args: argparse.Namespace) -> int:
    spec = ClusterSpec(
        root=Path(args.root).resolve() if args.root else CLUSTER_RUN_DIR,
        rest_port=args.rest_port,
        rpc_port=args.rpc_port,
        kafka_port=args.kafka_port,
    )
    result = up(spec, timeout=args.timeout)
    print(f"cluster: started {', '.join(result.started) or 'nothing (all running)'}")
    print(f"cluster: kafka {spec.bootstrap_servers} ready in {result.kafka_seconds:.1f} s")
    print(f"cluster: flink http://{spec.address} ready in {result.flink_seconds:.1f} s")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    stopped = down(_spec_from_args(args))
    print(f"cluster: stopped {', '.join(stopped)}" if stopped else "cluster: nothing running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    processes = status(spec)
    for process in processes:
        state = f"running (pid {process.pid}, {process.rss_mib:.0f} MiB RSS)" if process.pid else "stopped"
        print(f"{process.name:<14} {state}")
    total = sum(process.rss_mib for process in processes)
    print(f"{'total RSS':<14} {total:.0f} MiB")
    overview = _overview_or_none(spec.address)
    if overview is not None:
        print(
            f"flink          {overview['taskmanagers']} TaskManagers, {overview['slots-available']}/"
            f"{overview['slots-total']} slots free, {overview['jobs-running']} jobs running"
        )
    print(f"kafka          {spec.bootstrap_servers}")
    # LSB convention: 3 = not (fully) running, so scripts can test the state.
    return 0 if all(process.pid for process in processes) else 3


def _cmd_submit(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    address = args.address or spec.address
    job_id = submit(spec, address, cluster_job_args(args, spec))
    print(f"cluster: {JOB_NAME} submitted as job {job_id} to {address}")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    address = args.address or spec.address
    savepoint = args.savepoint or latest_savepoint(spec.savepoint_dir)
    if savepoint is None:
        raise UsageError(f"no savepoint under {spec.savepoint_dir}; give --savepoint")
    job_id = submit(spec, address, cluster_job_args(args, spec), from_savepoint=savepoint)
    print(f"cluster: {JOB_NAME} resumed from {savepoint} as job {job_id} (parallelism {args.parallelism})")
    return 0


def _cmd_stop_job(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    address = args.address or spec.address
    job_id = args.job_id or running_job_id(address)
    location = stop_with_savepoint(address, job_id, args.savepoint_dir or spec.savepoint_dir)
    print(f"cluster: job {job_id} stopped with savepoint {location}")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    cancel(args.address or spec.address, args.job_id)
    print(f"cluster: job {args.job_id} cancelled")
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    for job in jobs(args.address or spec.address):
        print(f"{job['jid']}  {job['state']:<10} {job['name']}")
    return 0


def _add_cluster_parser(subparsers: argparse._SubParsersAction) -> None:
    cluster = subparsers.add_parser(
        "cluster", help="run a Flink session cluster and a 3-broker Kafka locally, and jobs on it"
    )
    actions = cluster.add_subparsers(dest="cluster_command", required=True)

    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--root", help=f"state directory (default {CLUSTER_RUN_DIR})")
        parser.set_defaults(func=handler)
        return parser

    defaults = ClusterSpec()
    up_parser = action("up", _cmd_up, "start 1 JobManager, 2 TaskManagers and 3 Kafka brokers")
    up_parser.add_argument("--rest-port", type=int, default=defaults.rest_port, help="Flink REST/web UI")
    up_parser.add_argument("--rpc-port", type=int, default=defaults.rpc_port, help="JobManager RPC")
    up_parser.add_argument(
        "--kafka-port",
        type=int,
        default=defaults.kafka_port,
        help="first of the 3 broker ports; the controllers take the next 3 (default %(default)s)",
    )
    up_parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S)
    action("down", _cmd_down, "stop the cluster's processes (checkpoints, savepoints, Kafka data stay)")
    action("status", _cmd_status, "processes, memory and slots (exit code 3 unless all run)")

    def job_action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        parser = action(name, handler, help_text)
        parser.add_argument("--address", help="Flink REST address host:port (default: this cluster)")
        return parser

    for name, handler, help_text in (
        ("submit", _cmd_submit, "submit the aggregation job with `flink run --python`"),
        ("resume", _cmd_resume, "submit the job from a savepoint (default: the newest), e.g. rescaled"),
    ):
        parser = job_action(name, handler, help_text)
        add_stream_options(parser, lake_from_config=True)
        if name == "resume":
            parser.add_argument("--savepoint", metavar="URI", help="savepoint to restore from")
    stop_parser = job_action("stop-job", _cmd_stop_job, "stop the job with a savepoint")
    stop_parser.add_argument("job_id", nargs="?", help=f"default: the one running {JOB_NAME} job")
    stop_parser.add_argument("--savepoint-dir", metavar="URI", help="default: the cluster's savepoints/")
    cancel_parser = job_action("cancel", _cmd_cancel, "cancel a job without a savepoint")
    cancel_parser.add_argument("job_id")
    job_action("jobs", _cmd_jobs, "list the cluster's jobs")
