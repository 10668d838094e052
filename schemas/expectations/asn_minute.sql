-- Batch for the asn_minute suite: one partition of the per-ASN 1-minute aggregates.
select
    asn,
    requests,
    distinct_accounts,
    distinct_orgs,
    distinct_ips,
    epoch_ms(window_start) % 60000 as window_start_offset_ms,
    epoch_ms(window_end) - epoch_ms(window_start) as window_length_ms,
    window_start >= $partition_start and window_start < $partition_end as in_partition_hour
from {{ partition asn_minute }}
