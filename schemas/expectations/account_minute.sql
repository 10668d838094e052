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
    -- a tumbling 1-minute window starts on a whole minute and lasts exactly 60 s
    epoch_ms(window_start) % 60000 as window_start_offset_ms,
    epoch_ms(window_end) - epoch_ms(window_start) as window_length_ms,
    -- aggregates are partitioned by window_start
    window_start >= $partition_start and window_start < $partition_end as in_partition_hour,
    -- sub-counts are subsets of the requests they were counted from
    reasoning_requests <= requests and error_requests <= requests as subcounts_within_requests
from {{ partition account_minute }}
