"""python -m bench [--smoke] [--sections ...]: run the benchmarks, print the table, write the JSON."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import alert_latency, cluster_throughput, detect_run, detection, machine, throughput
from bench.workload import Workload, load_topic
from pipelines.infra import kafka_broker, paths

SECTIONS = ("throughput", "detection", "latency", "detect_run")
# Run only when named in --sections: the session cluster (6 JVMs) at each --cluster-parallelism.
OPT_IN_SECTIONS = ("cluster",)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Profile:
    event_sizes: tuple[int, ...]
    generator_accounts: int
    # (b) and (c) run only up to this size: at their speed 5M events alone would take most of the budget.
    alternatives_up_to: int
    detection_accounts: tuple[int, ...]
    detection_days: int
    files_per_partition: int
    injections: int
    injection_interval_s: float
    run_timeout_s: float
    detect_run_accounts: int  # benign accounts of the six-hour field-profile lake (campaigns add ~165)


FULL = Profile((1_000_000, 5_000_000), 10_000, 1_000_000, (1_000, 10_000), 7, 12, 20, 3.0, 900, 450)
SMOKE = Profile((20_000,), 200, 20_000, (50,), 1, 2, 3, 3.0, 600, 40)


# Every throughput is printed as a ratio to the job (a) and to the DuckDB batch reference (d) of its size.
REFERENCES = {"flink_java_udf": "ratio_to_a", "duckdb_batch": "ratio_to_d"}


def run_throughput(
    profile: Profile, variants: tuple[str, ...], work_dir: Path, seed: int, bootstrap: str
) -> dict:
    loads, runs = [], []
    for events in profile.event_sizes:
        workload = Workload(seed=seed, events=events, accounts=profile.generator_accounts)
        loads.append({"events": events, **load_topic(workload, bootstrap, work_dir / "cache")})
        for variant in variants:
            # (a) and the DuckDB reference (d) run at every size: each figure is a ratio to both.
            if variant not in REFERENCES and events > profile.alternatives_up_to:
                continue
            print(f"  throughput: {variant} over {events:,} events ...", file=sys.stderr, flush=True)
            run = throughput.run_variant(variant, workload, work_dir, bootstrap, profile.run_timeout_s)
            runs.append(run)
            print(
                f"    {run['events_per_s']:,} events/s, {run['events_per_cpu_s'] or '-'} events/CPU-s,"
                f" exact: {run['lake']['exact']}",
                file=sys.stderr,
                flush=True,
            )
    for reference, ratio in REFERENCES.items():
        by_size = {run["events"]: run["events_per_s"] for run in runs if run["variant"] == reference}
        for run in runs:
            if run["events"] in by_size:
                run[ratio] = round(run["events_per_s"] / by_size[run["events"]], 2)
    return {"topic_loads": loads, "runs": runs}


def _row(cells: list, widths: list[int]) -> str:
    return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))


def _table(title: str, header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [title, _row(header, widths), _row(["-" * width for width in widths], widths)]
    return "\n".join(lines + [_row(row, widths) for row in rows])


def _per_million(seconds: float | None, events: int) -> str | float:
    """Seconds per million events: the growth curve's slope (a linear suite keeps it flat)."""
    return "-" if seconds is None or not events else round(seconds * 1_000_000 / events, 2)


def format_report(results: dict) -> str:
    host = results["machine"]
    parts = [
        f"machine: {host['nproc']} cores, {host['memory_gib']} GiB, load average at start "
        f"{' / '.join(map(str, host['load_average_at_start']))} (1/5/15 min)"
    ]
    if "throughput" in results:
        rows = [
            [
                run["variant"],
                f"{run['events']:,}",
                f"{run['events_per_s']:,}",
                run.get("ratio_to_a", "-"),
                run.get("ratio_to_d", "-"),
                run["processing_s"],
                run["wall_s"],
                f"{run['events_per_cpu_s']:,}" if run.get("events_per_cpu_s") else "-",
                {True: "yes", False: "NO"}.get(run["lake"]["exact"], "-"),
                run["lake"].get("late_events", "-"),
                run["peak_rss_mib"]["sum_of_groups_at_peak"],
            ]
            for run in results["throughput"]["runs"]
        ]
        header = [
            "variant",
            "events",
            "events/s",
            "ratio to (a)",
            "ratio to (d)",
            "processing s",
            "wall s",
            "events/CPU-s",
            "exact",
            "late",
            "peak RSS MiB",
        ]
        parts.append(_table("1. throughput: Kafka -> job -> committed Parquet", header, rows))
        memory = [
            [
                run["variant"],
                f"{run['events']:,}",
                *(run["peak_rss_mib"][group] for group in ("broker", "flink_jvm", "python")),
            ]
            for run in results["throughput"]["runs"]
        ]
        parts.append(
            _table(
                "4. peak RSS (MiB) during 1", ["variant", "events", "broker", "flink JVM", "python"], memory
            )
        )
    if "detection" in results:
        rows = [
            [
                f"{size['lake']['accounts']:,}",
                size["lake"]["days"],
                f"{size['lake']['events']:,}",
                f"{size['lake']['account_minute_rows']:,}",
                size["lake"]["parquet_files"],
                # a lake whose small-file run was not measured (see detection_measured) has none
                (size.get("small_files") or {}).get("cold_s", "-"),
                (size.get("small_files") or {}).get("warm_s", "-"),
                (size.get("small_files") or {}).get("warm_cpu_s", "-"),
                size["compact_s"],
                size["compacted"]["cold_s"],
                size["compacted"]["warm_s"],
                size["compacted"].get("warm_cpu_s", "-"),
                _per_million(size["compacted"].get("warm_cpu_s"), size["lake"]["events"]),
                size["compacted"]["peak_rss_mib"],
            ]
            for size in results["detection"]
        ]
        header = [
            "accounts",
            "days",
            "events",
            "account_minute",
            "small files",
            "cold s",
            "warm s",
            "warm CPU-s",
            "compact s",
            "compacted cold s",
            "compacted warm s",
            "compacted warm CPU-s",
            "CPU-s per 1M events",
            "DuckDB RSS MiB",
        ]
        parts.append(_table("2. detection suite (all enabled detections)", header, rows))
        largest = results["detection"][-1]["compacted"]["per_detection_s"]
        slowest = sorted(largest.items(), key=lambda item: -item[1]["warm"])
        own_cpu = results["detection"][-1]["compacted"]["per_detection_cpu_s"]
        parts.append(
            _table(
                "   per detection, largest lake compacted, one after the other, warm",
                ["detection", "wall s", "CPU-s"],
                [[name, t["warm"], own_cpu[name]["warm"]] for name, t in slowest],
            )
        )
    if "latency" in results:
        latency = results["latency"]
        parts.append(
            _table(
                "3. event-to-alert latency (continuous job + detect --every 5s)",
                ["injections", "alerted", "p50 s", "p99 s", "max s"],
                [
                    [
                        latency["injections"],
                        latency["alerted"],
                        latency.get("p50_s", "-"),
                        latency.get("p99_s", "-"),
                        latency.get("max_s", "-"),
                    ]
                ],
            )
        )
    if "cluster" in results:
        rows = [
            [
                run["variant"],
                f"{run['events']:,}",
                f"{run['events_per_s']:,}",
                run["processing_s"],
                run["flink_jvms_cpu_s"],
                f"{run['events_per_cpu_s']:,}",
                f"{run['events_per_cpu_s_incl_client']:,}",
                run["kafka_cpu_s"],
                " / ".join(
                    str(x) for x in run["load_average"]["before"][:1] + run["load_average"]["after"][:1]
                ),
                "yes" if run["lake"]["exact"] else "NO",
                run["lake"]["late_events"],
                run["peak_rss_mib"]["flink_jvms"],
            ]
            for run in results["cluster"]["runs"]
        ]
        header = [
            "run",
            "events",
            "events/s",
            "processing s",
            "Flink JVMs CPU-s",
            "events/CPU-s",
            "incl. client",
            "Kafka CPU-s",
            "load before / after",
            "exact",
            "late",
            "Flink RSS MiB",
        ]
        parts.append(
            _table("6. session cluster: Kafka (3 nodes) -> JobManager + 2 TaskManagers", header, rows)
        )
    if "detect_run" in results:
        run = results["detect_run"]
        warm, rerun = run["warm_fresh_state"], run["warm_rerun"]
        parts.append(
            _table(
                "5. one detect run: detections + signal state + incidents + audit + routing (JSONL)",
                ["accounts", "events", "signals", "incidents", "cold process s", "warm s", "warm re-run s"],
                [
                    [
                        run["lake"]["accounts"],
                        f"{run['lake']['events']:,}",
                        warm["signals"],
                        warm["incident_changes"],
                        run["cold_process_s"],
                        warm["s"],
                        rerun["s"],
                    ]
                ],
            )
        )
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split(":")[1].strip())
    parser.add_argument("--smoke", action="store_true", help="small sizes: checks the benchmark still works")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma list of {', '.join(SECTIONS + OPT_IN_SECTIONS)} (default: all but "
        f"{', '.join(OPT_IN_SECTIONS)})",
    )
    parser.add_argument(
        "--cluster-parallelism",
        default="1,2",
        help="comma list of the job's parallelism on the session cluster (section cluster), one run each",
    )
    parser.add_argument(
        "--cluster-what-if",
        # neither a MiniCluster JVM setting nor a second --parallelism
        choices=[
            name
            for name, what_if in throughput.WHAT_IFS.items()
            if not what_if.env and "--parallelism" not in what_if.job_args
        ],
        help="the cluster runs with this what-if's job arguments (e.g. flink_checkpoint_60s)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(throughput.VARIANTS),
        help="throughput variants, comma list of "
        + ", ".join(throughput.VARIANTS + throughput.WHAT_IF_VARIANTS),
    )
    parser.add_argument(
        "--events", help="comma list of workload sizes instead of the profile's (e.g. 1000000)"
    )
    parser.add_argument(
        "--detection-accounts",
        help="comma list of lake sizes (accounts) for the detection section instead of the profile's: the "
        "growth curve, e.g. 1000,3000,10000,30000,100000",
    )
    parser.add_argument("--detection-days", type=int, help="days of the detection section's lakes")
    parser.add_argument(
        "--run-timeout-s", type=float, help="limit of each throughput or cluster run instead of the profile's"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=paths.RUN_DIR / "bench",
        help="lakes, topics' base files and logs (default .run/bench)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="result JSON")
    args = parser.parse_args(argv)
    sections = tuple(name.strip() for name in args.sections.split(",") if name.strip())
    variants = tuple(name.strip() for name in args.variants.split(",") if name.strip())
    known_variants = set(throughput.VARIANTS) | set(throughput.WHAT_IF_VARIANTS)
    unknown = sorted(set(sections) - set(SECTIONS + OPT_IN_SECTIONS)) + sorted(set(variants) - known_variants)
    if unknown:
        parser.error(f"unknown section(s)/variant(s): {', '.join(unknown)}")
    profile = SMOKE if args.smoke else FULL
    if args.events:
        sizes = tuple(int(size) for size in args.events.split(","))
        profile = dataclasses.replace(profile, event_sizes=sizes, alternatives_up_to=max(sizes))
    if args.detection_accounts:
        accounts = tuple(int(size) for size in args.detection_accounts.split(","))
        profile = dataclasses.replace(profile, detection_accounts=accounts)
    if args.run_timeout_s:
        profile = dataclasses.replace(profile, run_timeout_s=args.run_timeout_s)
    if args.detection_days:
        profile = dataclasses.replace(profile, detection_days=args.detection_days)
    started = time.perf_counter()
    results: dict = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "machine": machine.describe(),
        "profile": profile.__dict__,
    }
    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    # The DuckDB sections run first, before a broker exists and before the throughput runs leave
    # gigabytes of topics and lakes behind: what they time is the suite, not the bench's own leftovers.
    if "detection" in sections:
        print("  detection suite ...", file=sys.stderr, flush=True)
        results["detection"] = detection.run(
            work_dir,
            profile.detection_accounts,
            profile.detection_days,
            profile.files_per_partition,
            args.seed,
        )
    if "detect_run" in sections:
        print("  one detect run ...", file=sys.stderr, flush=True)
        results["detect_run"] = detect_run.run(
            work_dir, profile.detect_run_accounts, args.seed, repeat=1 if args.smoke else 3
        )
    if "throughput" in sections or "latency" in sections:
        broker = kafka_broker.start()
        try:
            if "throughput" in sections:
                results["throughput"] = run_throughput(
                    profile, variants, work_dir, args.seed, broker.bootstrap
                )
            if "latency" in sections:
                print("  event-to-alert latency ...", file=sys.stderr, flush=True)
                results["latency"] = alert_latency.run(
                    work_dir / "latency", broker.bootstrap, profile.injections, profile.injection_interval_s
                )
        finally:
            # A broker the bench started is stopped (its topics hold gigabytes); one already running stays.
            if not broker.already_running:
                kafka_broker.stop()
    if "cluster" in sections:
        results["cluster"] = cluster_throughput.run(
            work_dir,
            profile.event_sizes,
            tuple(int(value) for value in args.cluster_parallelism.split(",")),
            args.seed,
            profile.generator_accounts,
            profile.run_timeout_s,
            args.cluster_what_if,
        )
    results["total_s"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(format_report(results))
    print(f"\ntotal {results['total_s']} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
