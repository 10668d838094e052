-- Batch for the ip_minute suite: one partition of the per-source-IP 1-minute aggregates.
select
    source_ip,
    requests,
    distinct_accounts,
    distinct_orgs,
    epoch_ms(window_start) % 60000 as window_start_offset_ms,
    epoch_ms(window_end) - epoch_ms(window_start) as window_length_ms,
    window_start >= $partition_start and window_start < $partition_end as in_partition_hour
from {{ partition ip_minute }}
