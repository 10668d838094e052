-- Batch for the asn_minute suite: one partition of the per-ASN 1-minute aggregates.
select
    asn,
    requests,
    distinct_accounts,
    distinct_orgs,
    distinct_ips,
    -- window_start_offset_ms, window_length_ms, in_partition_hour (sql/views/minute_window_checks.sql)
    unnest(minute_window_checks(window_start, window_end, $partition_start, $partition_end))
from {{ partition asn_minute }}
