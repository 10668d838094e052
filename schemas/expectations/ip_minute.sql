-- Batch for the ip_minute suite: one partition of the per-source-IP 1-minute aggregates.
select
    source_ip,
    requests,
    distinct_accounts,
    distinct_orgs,
    -- window_start_offset_ms, window_length_ms, in_partition_hour (sql/views/minute_window_checks.sql)
    unnest(minute_window_checks(window_start, window_end, $partition_start, $partition_end))
from {{ partition ip_minute }}
