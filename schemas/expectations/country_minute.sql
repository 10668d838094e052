-- Batch for the country_minute suite: one partition of the per-country 1-minute aggregates.
select
    country,
    requests,
    distinct_accounts,
    input_tokens,
    output_tokens,
    epoch_ms(window_start) % 60000 as window_start_offset_ms,
    epoch_ms(window_end) - epoch_ms(window_start) as window_length_ms,
    window_start >= $partition_start and window_start < $partition_end as in_partition_hour
from {{ partition country_minute }}
