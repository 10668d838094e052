-- Batch for the account_minute suite: one partition of the per-account 1-minute aggregates.
select
    account_id,
    requests,
    input_tokens,
    output_tokens,
    distinct_ips,
    distinct_countries,
    distinct_asns,
    distinct_prompt_fingerprints,
    reasoning_requests,
    error_requests,
    -- window_start_offset_ms, window_length_ms, in_partition_hour (sql/views/minute_window_checks.sql)
    unnest(minute_window_checks(window_start, window_end, $partition_start, $partition_end)),
    -- sub-counts are subsets of the requests they were counted from
    reasoning_requests <= requests and error_requests <= requests as subcounts_within_requests
from {{ partition account_minute }}
