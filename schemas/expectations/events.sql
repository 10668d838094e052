-- Batch for the events suite: one committed partition of the raw archive, with the derived columns
-- its expectations check (Great Expectations' pandas engine sees exactly this result).
-- {{ partition events }} is the partition with every column of pipelines/lake/layout.py (missing ones null);
-- $validated_at, $partition_start and $partition_end are bound by pipelines/quality/gates.py.
select
    event_id,
    event_time,
    account_id,
    api_key_id,
    source_ip,
    model,
    endpoint,
    input_tokens,
    output_tokens,
    status_code,
    country,
    latitude,
    longitude,
    asn_type,
    -- positive = the event claims to come from the future (relative to the validating clock)
    date_diff('millisecond', $validated_at, event_time) / 1000.0 as seconds_ahead_of_validation,
    -- the sink partitions by event time, so a row outside its own hour means a partitioning bug
    event_time >= $partition_start and event_time < $partition_end as in_partition_hour
from {{ partition events }}
