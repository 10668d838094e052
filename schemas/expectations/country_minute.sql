-- Batch for the country_minute suite: one partition of the per-country 1-minute aggregates.
select
    country,
    requests,
    distinct_accounts,
    input_tokens,
    output_tokens,
    -- window_start_offset_ms, window_length_ms, in_partition_hour (sql/views/minute_window_checks.sql)
    unnest(minute_window_checks(window_start, window_end, $partition_start, $partition_end))
from {{ partition country_minute }}
