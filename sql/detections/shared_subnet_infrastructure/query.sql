-- shared_subnet_infrastructure: many accounts of many organisations inside one network block (IPv4
-- /24, IPv6 /48) within a window. Proxy pools rotate through neighbouring addresses, so counting per IP
-- (shared_hosting_infrastructure) misses them. Accounts are weighted by where they come from: a hosting,
-- VPN or Tor block counts each account fully, an ordinary block (CGNAT, campus) only $ordinary_network_weight,
-- and one organisation behind its office block (corporate NAT) fails $min_distinct_orgs.
-- A building block, not a standalone finding: a crowd in one block (a cloud region, a proxy service's
-- range, a consumer VPN) carries unrelated customers, so its risk stays context (below 20) and it never
-- links accounts. The coordination that makes a ring is weighed per IP (shared_hosting_infrastructure)
-- and across kinds of link (ring_clustering); this signal adds the block-level picture to an incident.

with block_events as not materialized (
    -- the block of each address comes from ip_network_blocks (computed per distinct address); shared_key
    -- is the block, as network_crowds reads it (sql/views/network_crowds.sql), which rules out the block
    -- windows that cannot be crowded before its per-account work. Not materialized: both readers keep
    -- only the columns and (block_windows) the few crowded windows they need, so scanning the shared
    -- table and joining the blocks twice costs less than a 4M-row copy of every column (-0.4 CPU-s at
    -- 10K accounts x 7 days)
    select
        blocks.network_block as shared_key,
        events.account_id,
        events.org_key,
        events.asn_key,
        events.asn_type,
        events.source_ip,
        events.event_time,
        time_bucket(to_minutes($window_minutes), events.event_time) as window_start
    from events_enriched as events
    left join ip_network_blocks as blocks using (source_ip)
),

crowded_blocks as (
    select *
    from network_crowds(
        block_events, $anonymizer_asn_types, $ordinary_network_weight, $min_weighted_accounts,
        $hydra_weighted_accounts, $min_distinct_orgs, $weight_crowd, $weight_anonymizer
    )
),

block_windows as (
    -- the per-block statistics, for crowded blocks only
    select
        shared_key,
        window_start,
        count(*) as requests,
        count(distinct source_ip) as distinct_ips,
        list_sort(list(distinct asn_key) filter (where asn_key is not null)) as asns,
        list_sort(list(distinct asn_type) filter (where asn_type is not null)) as asn_types,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from block_events
    semi join crowded_blocks using (shared_key, window_start)
    group by shared_key, window_start
)

select
    shared_key as entity_id,
    account_ids,
    window_start,
    window_start + to_minutes($window_minutes) as window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    risk_factors,
    requests,
    distinct_ips,
    distinct_accounts,
    distinct_orgs,
    round(weighted_accounts, 2) as weighted_accounts,
    asns,
    asn_types,
    first_seen,
    last_seen
from crowded_blocks
inner join block_windows using (shared_key, window_start)
order by window_start, shared_key
