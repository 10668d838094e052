"""Variant (c), the "no framework" alternative: kafka-python, dicts and pyarrow, one process.

What a user would write instead of a Flink job: consume the topic from the beginning up to the offsets
that are latest at start, parse each record with the same rules (bench/pyparse.py), aggregate the same
one-minute windows in dicts, and every 10 s write closed windows and the archived events as Parquet in
the lake layout, then commit the offsets (at least once: a crash between the two would duplicate a
flush). Windows close on a watermark 10 s behind the slowest unfinished partition's newest event, as
Flink's per-partition watermarks do, and the late rule is the job's.

python -m bench.plain_consumer --topic T --group-id G --bootstrap-servers HOST:PORT --lake DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from kafka import KafkaConsumer, TopicPartition

from bench.pyparse import parse
from pipelines.lake import layout as lake

# The Arrow schema of each lake table lives with the fixture writer, which matches Flink's Parquet output.

MINUTE = dt.timedelta(minutes=1)
MILLISECOND = dt.timedelta(milliseconds=1)


def _distinct(values: set) -> int:
    return len(values) - (None in values)  # count(distinct x) ignores nulls


class Windows:
    """The four *_minute tables and the events/late_events archive, buffered until the next flush."""

    def __init__(self, watermark_delay: dt.timedelta):
        self.watermark_delay = watermark_delay
        # Newest event time per partition that still has data to read (finished ones stop holding back).
        self.newest: dict[int, dt.datetime | None] = {}
        self.open: dict[str, dict[tuple, list]] = {
            name: {} for name in ("account_minute", "country_minute", "ip_minute", "asn_minute")
        }
        self.archived: list[tuple] = []
        self.late: list[tuple] = []
        self.dead_letters = 0

    @property
    def watermark(self) -> dt.datetime | None:
        if not self.newest or None in self.newest.values():
            return None  # some partition has not been read yet
        return min(self.newest.values()) - self.watermark_delay

    def finish(self, partition: int) -> None:
        self.newest.pop(partition, None)

    def add(self, raw: bytes, partition: int, offset: int) -> None:
        fields = parse(raw)
        if fields[0] is not None:
            self.dead_letters += 1
            return
        row = (*fields[2:], partition, offset)
        (
            event_id,
            event_time,
            account_id,
            _key,
            org_id,
            source_ip,
            country,
            _lat,
            _lon,
            asn,
            asn_type,
            _model,
            _endpoint,
            input_tokens,
            output_tokens,
            status_code,
            _latency,
            prompt_fingerprint,
            *_rest,
        ) = row
        self.archived.append(row)
        start = event_time.replace(second=0, microsecond=0)
        watermark = self.watermark
        # Flink's rule: a window has fired once the watermark reached its end - 1 ms.
        if watermark is not None and start + MINUTE - MILLISECOND <= watermark:
            self.late.append((*row, watermark))
            return
        newest = self.newest.get(partition)
        if newest is None or event_time > newest:
            self.newest[partition] = event_time
        account = self.open["account_minute"].get((start, account_id))
        if account is None:
            account = [0, 0, 0, set(), set(), set(), set(), 0, 0, event_time, event_time]
            self.open["account_minute"][(start, account_id)] = account
        account[0] += 1
        account[1] += input_tokens
        account[2] += output_tokens
        account[3].add(source_ip)
        account[4].add(country)
        account[5].add(asn)
        account[6].add(prompt_fingerprint)
        account[7] += "reasoning_elicitation" in row[20]
        account[8] += status_code >= 400
        account[9] = min(account[9], event_time)
        account[10] = max(account[10], event_time)
        by_country = self.open["country_minute"].setdefault((start, country), [0, set(), 0, 0])
        by_country[0] += 1
        by_country[1].add(account_id)
        by_country[2] += input_tokens
        by_country[3] += output_tokens
        by_ip = self.open["ip_minute"].setdefault((start, source_ip, asn, asn_type), [0, set(), set()])
        by_ip[0] += 1
        by_ip[1].add(account_id)
        by_ip[2].add(org_id)
        by_asn = self.open["asn_minute"].setdefault((start, asn, asn_type), [0, set(), set(), set()])
        by_asn[0] += 1
        by_asn[1].add(account_id)
        by_asn[2].add(org_id)
        by_asn[3].add(source_ip)

    def closed_rows(self, everything: bool) -> dict[str, list[tuple]]:
        """Rows of the windows that have fired (all of them at end of input), removed from the buffer."""
        watermark = self.watermark
        rows: dict[str, list[tuple]] = {}
        for name, windows in self.open.items():
            closed = [
                key
                for key in windows
                if everything or (watermark is not None and key[0] + MINUTE - MILLISECOND <= watermark)
            ]
            rows[name] = [_window_row(name, key, windows.pop(key)) for key in closed]
        return rows


def _window_row(name: str, key: tuple, values: list) -> tuple:
    start, *group = key
    window = (start, start + MINUTE)
    if name == "account_minute":
        count, tokens_in, tokens_out, ips, countries, asns, prompts, reasoning, errors, first, last = values
        return (
            *window,
            *group,
            count,
            tokens_in,
            tokens_out,
            _distinct(ips),
            _distinct(countries),
            _distinct(asns),
            _distinct(prompts),
            reasoning,
            errors,
            first,
            last,
        )
    if name == "country_minute":
        count, accounts, tokens_in, tokens_out = values
        return (*window, *group, count, _distinct(accounts), tokens_in, tokens_out)
    return (*window, *group, values[0], *(_distinct(distinct) for distinct in values[1:]))


class LakeWriter:
    """One Parquet file per table and hour partition per flush, named like Flink's committed files."""

    def __init__(self, lake_dir: Path):
        self.lake_dir = lake_dir
        self.run_id = uuid.uuid4().hex[:12]
        self.flushes = 0

    def write(self, table: lake.LakeTable, rows: list[tuple], time_index: int) -> None:
        schema = table.arrow_schema()
        partitions: dict[tuple[str, str], list[tuple]] = defaultdict(list)
        for row in rows:
            moment = row[time_index]
            partitions[(f"{moment:%Y-%m-%d}", f"{moment:%H}")].append(row)
        for (day, hour), partition_rows in partitions.items():
            folder = table.path(self.lake_dir) / f"dt={day}" / f"hr={hour}"
            folder.mkdir(parents=True, exist_ok=True)
            column_values = zip(*partition_rows, strict=True)
            columns = [
                pa.array(values, type=field.type) for values, field in zip(column_values, schema, strict=True)
            ]
            hidden = folder / f".part-{self.run_id}-{self.flushes}.inprogress"
            pq.write_table(pa.Table.from_arrays(columns, schema=schema), hidden, compression="snappy")
            hidden.rename(folder / f"part-{self.run_id}-{self.flushes}")  # readers glob part-* only

    def flush(self, windows: Windows, everything: bool) -> None:
        for name, rows in windows.closed_rows(everything).items():
            if rows:
                self.write(next(t for t in lake.TABLES if t.name == name), rows, time_index=0)
        if windows.archived:
            self.write(lake.EVENTS, windows.archived, time_index=1)
        if windows.late:
            self.write(lake.LATE_EVENTS, windows.late, time_index=1)
        windows.archived, windows.late = [], []
        self.flushes += 1


def consume(args: argparse.Namespace) -> dict:
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group_id,
        client_id="usagewatch-bench-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        fetch_max_bytes=50 * 2**20,
        max_partition_fetch_bytes=10 * 2**20,
    )
    partitions = [TopicPartition(args.topic, p) for p in sorted(consumer.partitions_for_topic(args.topic))]
    # Manual assignment: one process owns every partition, so no group rebalance to wait for.
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    windows = Windows(dt.timedelta(seconds=args.watermark_delay_s))
    remaining = {tp for tp in partitions if ends[tp] > 0}
    windows.newest = {tp.partition: None for tp in remaining}
    writer = LakeWriter(Path(args.lake))
    consumed = 0
    last_flush = time.monotonic()
    while remaining:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for record in records:
                windows.add(record.value, record.partition, record.offset)
            consumed += len(records)
            if records and records[-1].offset + 1 >= ends[tp]:
                remaining.discard(tp)
                windows.finish(tp.partition)
        if time.monotonic() - last_flush >= args.flush_interval_s:
            writer.flush(windows, everything=False)
            consumer.commit()
            last_flush = time.monotonic()
    writer.flush(windows, everything=True)
    consumer.commit()
    consumer.close()
    return {"consumed": consumed, "dead_letters": windows.dead_letters, "flushes": writer.flushes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plain_consumer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--flush-interval-s", type=float, default=10)
    parser.add_argument("--watermark-delay-s", type=float, default=10)
    print(consume(parser.parse_args(argv)), flush=True)


if __name__ == "__main__":
    main()
