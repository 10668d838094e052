"""parse_access_event as a PyFlink Python scalar function: the per-event Python UDF of variant (b).

Same name, arguments and result type as the Java UDF, so the job's views use it unchanged; every record
crosses the JVM <-> Python worker boundary and back. Imported by the job client and by the Python
workers (which find `bench` through PYTHONPATH).
"""

from __future__ import annotations

from pyflink.table import DataTypes, Row
from pyflink.table.udf import udf

from bench.pyparse import parse
from pipelines.lake import layout as lake

_FLINK_TYPES = {
    "STRING": DataTypes.STRING(),
    "TIMESTAMP(3)": DataTypes.TIMESTAMP(3),
    "BIGINT": DataTypes.BIGINT(),
    "INT": DataTypes.INT(),
    "DOUBLE": DataTypes.DOUBLE(),
    "ARRAY<STRING>": DataTypes.ARRAY(DataTypes.STRING()),
}

# error, raw, then every events column but the partitions (the Kafka coordinates pass through last).
RESULT_TYPE = DataTypes.ROW(
    [DataTypes.FIELD("error", DataTypes.STRING()), DataTypes.FIELD("raw", DataTypes.STRING())]
    + [
        DataTypes.FIELD(name, _FLINK_TYPES[flink_type])
        for name, flink_type in lake.EVENTS.columns
        if name not in lake.PARTITION_COLUMNS
    ]
)


# Non-deterministic for the same reason as the Java UDF: the planner must not copy the call per field.
@udf(result_type=RESULT_TYPE, deterministic=False)
def parse_access_event(
    payload: bytes,
    kafka_partition: int | None,
    kafka_offset: int | None,
    arrival_time,
    max_future_skew_s: int,
    max_event_age_s: int,
) -> Row:
    # The event-time bounds are not mirrored (see bench/pyparse.py): benchmark traffic is within them.
    return Row(*parse(payload), kafka_partition, kafka_offset)
