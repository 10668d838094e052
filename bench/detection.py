"""Measurement 2: detection suite latency over a synthetic lake (7 days in the full run), cold and warm,
per detection, with the small files a streaming sink leaves behind versus the same lake compacted.

The lake is written directly with pyarrow in the layout of pipelines/lake/layout.py: an events table drawn per
account (each account is active in ~2% of the minutes, ~2 requests per active minute, a few IPs, one
ASN per IP, some on hosting/VPN networks, a few in restricted regions), and the four *_minute tables
aggregated from it with the job's own definitions (DuckDB over the events). "Small files" splits every
hour partition into `files_per_partition` time-ordered part files, like a sink that commits every
60/files_per_partition minutes; "compacted" is the same lake after `usagewatch compact`
(pipelines/lake/compaction.py).

Each timing runs in a fresh child process (python -m bench.detection --lake DIR) and times the suite as
`usagewatch detect` runs it (pipelines/detect/detections.py: run_suite): one shared scan of the lake,
then every enabled detection over it, two at a time. "cold" is the first suite run on a new DuckDB
connection (the OS page cache is not dropped: the machine is shared), "warm" the second on the same
connection; each with the CPU seconds of all the child's threads, which other load on the cores barely
moves, and the load average when it started. A third run, one step after the other, gives each step's
own wall and CPU seconds. The child's peak RSS is DuckDB's plus Python's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.detect.detections import load_detections, run_detection, run_suite, shared_scan
from pipelines.infra import paths
from pipelines.lake import compaction
from pipelines.lake import layout as lake
from pipelines.lake.analyst import open_lake
from pipelines.lake.layout import SUCCESS_FILE
from pipelines.stream.flink_job import WINDOW_AGGREGATES

LAKE_START = dt.datetime(2026, 1, 5)
ACTIVE_MINUTE_SHARE = 0.02
MEAN_REQUESTS_PER_ACTIVE_MINUTE = 2.0
# (country, latitude, longitude, share of accounts): mostly unrestricted, a few embargoed (IR, KP).
HOMES = (
    ("US", 40.7128, -74.0060, 0.40),
    ("IN", 19.0760, 72.8777, 0.15),
    ("GB", 51.5072, -0.1276, 0.10),
    ("DE", 52.5200, 13.4050, 0.10),
    ("BR", -23.5505, -46.6333, 0.10),
    ("JP", 35.6762, 139.6503, 0.097),
    ("SG", 1.3521, 103.8198, 0.05),
    ("IR", 35.6892, 51.3890, 0.002),
    ("KP", 39.0392, 125.7625, 0.001),
)
ASN_TYPES = ("residential", "mobile", "business", "hosting", "vpn")
ASN_TYPE_SHARES = (0.70, 0.12, 0.10, 0.05, 0.03)
IPS_PER_ACCOUNT = 3
# The row of the per-detection timings that is the suite's one shared scan of the lake (shared_scan).
SHARED_SCAN_STEP = "(shared scan)"


def _strings(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


# A lake is drawn at most this many account-days at a time (10K accounts x 7 days, ~4M events, is one
# chunk): 100K accounts x 7 days (~40M events) at once would not fit in memory beside its aggregates.
CHUNK_ACCOUNT_DAYS = 70_000


@dataclass(frozen=True)
class Population:
    """What stays the same for an account across chunks: home, addresses and their networks, activity."""

    home: np.ndarray
    ip_count: np.ndarray
    ips: pa.Array
    ip_asn: np.ndarray
    ip_asn_type: np.ndarray
    active_share: np.ndarray

    @property
    def accounts(self) -> int:
        return len(self.home)


def synthetic_population(accounts: int, rng: np.random.Generator) -> Population:
    home = rng.choice(len(HOMES), size=accounts, p=[share for *_, share in HOMES])
    ip_count = rng.integers(1, IPS_PER_ACCOUNT + 1, size=accounts)
    octets = rng.integers(1, 255, size=(accounts * IPS_PER_ACCOUNT, 4))
    octets[:, 0] = rng.choice((24, 31, 46, 73, 82, 98, 151, 185, 212), size=len(octets))
    ips = pc.binary_join_element_wise(*(pc.cast(pa.array(octets[:, i]), pa.string()) for i in range(4)), ".")
    ip_asn = rng.integers(2_000, 2_000 + max(accounts // 4, 50), size=len(octets))
    ip_asn_type = rng.choice(len(ASN_TYPES), size=len(octets), p=ASN_TYPE_SHARES)
    active_share = rng.gamma(2.0, ACTIVE_MINUTE_SHARE / 2, size=accounts).clip(max=0.5)
    return Population(home, ip_count, ips, ip_asn, ip_asn_type, active_share)


def synthetic_chunks(accounts: int, days: int, seed: int) -> Iterator[pa.Table]:
    """The lake's events, a few whole days at a time (CHUNK_ACCOUNT_DAYS). A lake that fits in one chunk
    is drawn from one seeded generator, so the 1K and 10K lakes are the ones measured before chunking."""
    rng = np.random.default_rng(seed)
    population = synthetic_population(accounts, rng)
    days_per_chunk = max(1, CHUNK_ACCOUNT_DAYS // accounts)
    first_event_id = 0
    for chunk, first_day in enumerate(range(0, days, days_per_chunk)):
        chunk_rng = rng if chunk == 0 else np.random.default_rng((seed, chunk))
        chunk_days = min(days_per_chunk, days - first_day)
        events = synthetic_events(population, first_day, chunk_days, chunk_rng, first_event_id)
        first_event_id += events.num_rows
        yield events


def synthetic_events(
    population: Population, first_day: int, days: int, rng: np.random.Generator, first_event_id: int
) -> pa.Table:
    """Seeded events of the events table's schema for days [first_day, first_day + days), sorted by
    event_time."""
    minutes = days * 24 * 60
    # Active minutes per account, then requests per active minute.
    active = rng.binomial(minutes, population.active_share)
    account_of_minute = np.repeat(np.arange(population.accounts), active)
    minute = rng.integers(0, minutes, size=len(account_of_minute))
    requests = 1 + rng.poisson(MEAN_REQUESTS_PER_ACTIVE_MINUTE - 1, size=len(minute))
    account = np.repeat(account_of_minute, requests)
    event_ms = np.repeat(minute, requests).astype(np.int64) * 60_000 + rng.integers(
        0, 60_000, size=len(account)
    )
    order = np.argsort(event_ms, kind="stable")
    account, event_ms = account[order], event_ms[order]
    count = len(account)

    ip_index = account * IPS_PER_ACCOUNT + rng.integers(0, 2**31, size=count) % population.ip_count[account]
    country_index = population.home[account]
    errored = rng.random(count) < 0.03
    input_tokens = np.where(errored, 0, rng.lognormal(7, 0.8, size=count).astype(np.int64) + 1)
    output_tokens = np.where(errored, 0, rng.lognormal(6, 0.8, size=count).astype(np.int64) + 1)
    reasoning = rng.random(count) < 0.02
    tag_offsets = np.concatenate(([0], np.cumsum(reasoning))).astype(np.int32)
    start_ms = int((LAKE_START + dt.timedelta(days=first_day)).replace(tzinfo=dt.UTC).timestamp() * 1000)
    columns = {
        "event_id": _strings("evt-", first_event_id + np.arange(count)),
        "event_time": pa.array(event_ms + start_ms, pa.timestamp("ms")),
        "account_id": _strings("acct_", account),
        "api_key_id": _strings("key_", account),
        "org_id": pa.array(
            np.where(account % 3 == 0, None, (account // 5).astype(str)).tolist(), pa.string()
        ),
        "source_ip": population.ips.take(pa.array(ip_index)),
        "country": pa.array([HOMES[i][0] for i in range(len(HOMES))]).take(pa.array(country_index)),
        "latitude": pa.array(np.array([h[1] for h in HOMES])[country_index]),
        "longitude": pa.array(np.array([h[2] for h in HOMES])[country_index]),
        "asn": pa.array(population.ip_asn[ip_index]),
        "asn_type": pa.array(ASN_TYPES).take(pa.array(population.ip_asn_type[ip_index])),
        "model": pa.array(("nimbus-large", "nimbus-medium", "nimbus-small")).take(
            pa.array(rng.integers(0, 3, size=count))
        ),
        "endpoint": pa.array(["/v1/messages"] * count),
        "input_tokens": pa.array(input_tokens),
        "output_tokens": pa.array(output_tokens),
        "status_code": pa.array(np.where(errored, 429, 200).astype(np.int32)),
        "latency_ms": pa.array(rng.integers(150, 20_000, size=count)),
        "prompt_fingerprint": _strings("f", account * 4 + rng.integers(0, 4, size=count)),
        "payment_fingerprint": _strings("card", account),
        "user_agent": pa.array(["python-sdk/1.54.0 CPython/3.12.7"] * count),
        "request_tags": pa.ListArray.from_arrays(
            tag_offsets, pa.array(["reasoning_elicitation"] * int(reasoning.sum()), pa.string())
        ),
    }
    schema = lake.EVENTS.arrow_schema()
    return pa.Table.from_pydict(
        {name: columns.get(name, pa.nulls(count, schema.field(name).type)) for name in schema.names}
    ).cast(schema)


def _window_tables(events: pa.Table) -> dict[lake.LakeTable, pa.Table]:
    """The four *_minute tables from the events, with the job's own aggregate expressions."""
    con = duckdb.connect()
    con.register("on_time_events", events)
    tables = {}
    for table in (lake.ACCOUNT_MINUTE, lake.COUNTRY_MINUTE, lake.IP_MINUTE, lake.ASN_MINUTE):
        # Flink SQL's array_contains is DuckDB's list_contains; everything else is the same text.
        aggregates = WINDOW_AGGREGATES[table.name].replace("array_contains", "list_contains")
        windowed = con.sql(
            f"""select time_bucket(interval 1 minute, event_time) as window_start,
                       time_bucket(interval 1 minute, event_time) + interval 1 minute as window_end,
                       {aggregates}
                from on_time_events
                group by all
                order by window_start"""
        ).to_arrow_table()
        tables[table] = windowed.cast(table.arrow_schema())
    con.close()
    return tables


def write_partitioned(
    lake_dir: Path, table: lake.LakeTable, rows: pa.Table, time_column: str, files_per_partition: int
) -> int:
    """Hour partitions of time-sorted rows, each split into files_per_partition part files."""
    hours = pc.cast(rows[time_column], pa.int64()).to_numpy() // 3_600_000
    bounds = np.flatnonzero(np.diff(hours)) + 1
    written = 0
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(hours)], strict=True):
        moment = dt.datetime.fromtimestamp(int(hours[start]) * 3600, dt.UTC)
        folder = table.path(lake_dir) / f"dt={moment:%Y-%m-%d}" / f"hr={moment:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        cuts = np.linspace(start, stop, files_per_partition + 1).astype(int)
        for index, (first, last) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            if last > first:
                pq.write_table(rows.slice(first, last - first), folder / f"part-bench-{index}")
                written += 1
        # Closed partitions carry the sink's commit marker, which is what compaction looks for.
        (folder / SUCCESS_FILE).touch()
    return written


def write_lake(lake_dir: Path, accounts: int, days: int, seed: int, files_per_partition: int) -> dict:
    started = time.perf_counter()
    events_written = account_minute_rows = files = 0
    for events in synthetic_chunks(accounts, days, seed):
        tables = {lake.EVENTS: events, **_window_tables(events)}
        files += sum(
            write_partitioned(
                lake_dir,
                table,
                rows,
                "event_time" if table is lake.EVENTS else "window_start",
                files_per_partition,
            )
            for table, rows in tables.items()
        )
        events_written += events.num_rows
        account_minute_rows += tables[lake.ACCOUNT_MINUTE].num_rows
    return {
        "accounts": accounts,
        "days": days,
        "events": events_written,
        "account_minute_rows": account_minute_rows,
        "parquet_files": files,
        "write_s": round(time.perf_counter() - started, 1),
    }


def compact_lake(lake_dir: Path) -> dict:
    started = time.perf_counter()
    results = compaction.compact(lake_dir, list(lake.TABLES), min_files=2)
    return {"compacted_partitions": len(results), "compact_s": round(time.perf_counter() - started, 1)}


def time_detections(lake_dir: Path) -> dict:
    """Run in a fresh process: the suite as `detect` runs it (run_suite: the shared scan, then the
    detections CONCURRENT_DETECTIONS at a time), cold and then warm, wall and CPU seconds; then once more
    one step after the other, for each step's own wall and CPU seconds (the profile)."""
    detections = [detection for detection in load_detections() if detection.enabled]
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    con = open_lake(lake_dir)
    open_s = time.perf_counter() - started
    suite: dict[str, dict[str, float]] = {}
    alerts = 0
    for attempt in ("cold", "warm"):
        # CPU seconds of every thread (DuckDB's too): what the suite costs whatever else runs on the cores
        load, began, cpu_began = os.getloadavg()[0], time.perf_counter(), time.process_time()
        raised = run_suite(con, detections, now)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        suite[attempt] = {"s": round(wall, 2), "cpu_s": round(cpu, 2), "load": round(load, 1)}
        alerts = len(raised) if attempt == "cold" else alerts

    per_step: dict[str, dict[str, float]] = {}
    per_step_cpu: dict[str, dict[str, float]] = {}

    def timed(step: str, began: float, cpu_began: float) -> None:
        per_step[step] = {"warm": round(time.perf_counter() - began, 3)}
        per_step_cpu[step] = {"warm": round(time.process_time() - cpu_began, 3)}

    began, cpu_began = time.perf_counter(), time.process_time()
    with shared_scan(con, detections):
        timed(SHARED_SCAN_STEP, began, cpu_began)
        for detection in detections:
            step_began, step_cpu_began = time.perf_counter(), time.process_time()
            run_detection(con, detection, now)
            timed(detection.id, step_began, step_cpu_began)
    sequential_s, sequential_cpu_s = time.perf_counter() - began, time.process_time() - cpu_began
    con.close()
    return {
        "open_s": round(open_s, 3),
        "cold_s": suite["cold"]["s"],
        "warm_s": suite["warm"]["s"],
        "cold_cpu_s": suite["cold"]["cpu_s"],
        "warm_cpu_s": suite["warm"]["cpu_s"],
        # cores the warm suite kept busy on average (2 is all of this machine's)
        "warm_cores_busy": round(suite["warm"]["cpu_s"] / suite["warm"]["s"], 2),
        "load_average": {"cold": suite["cold"]["load"], "warm": suite["warm"]["load"]},
        # the same warm suite one step after the other: what running detections concurrently buys
        "sequential_warm_s": round(sequential_s, 2),
        "sequential_warm_cpu_s": round(sequential_cpu_s, 2),
        "alerts": alerts,
        # the profile: steps one after the other, so each step's CPU seconds are its own
        "per_detection_s": per_step,
        "per_detection_cpu_s": per_step_cpu,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(lake_dir: Path) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "bench.detection", "--lake", str(lake_dir)],
        cwd=paths.REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout.splitlines()[-1])


def run(
    work_dir: Path, account_sizes: tuple[int, ...], days: int, files_per_partition: int, seed: int
) -> list[dict]:
    """Per size: the lake with small files, timed; compacted, timed again."""
    results = []
    for accounts in account_sizes:
        lake_dir = work_dir / f"detect-lake-{accounts}"
        shutil.rmtree(lake_dir, ignore_errors=True)
        written = write_lake(lake_dir, accounts, days, seed, files_per_partition)
        small = measure(lake_dir)
        compacted_by = compact_lake(lake_dir)
        compacted = measure(lake_dir)
        results.append({"lake": written, "small_files": small, **compacted_by, "compacted": compacted})
        shutil.rmtree(lake_dir)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description="time the detections")
    parser.add_argument("--lake", required=True, type=Path)
    print(json.dumps(time_detections(parser.parse_args().lake)))


if __name__ == "__main__":
    main()
