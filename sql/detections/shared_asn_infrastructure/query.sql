-- shared_asn_infrastructure: many accounts of many organisations inside one autonomous system within a
-- window, weighted by the AS's kind: a hosting/VPN/Tor AS is where proxy clusters live, while every
-- residential ISP legitimately serves thousands of customers, so their accounts count only a fraction.
-- Groups by asn_key (AS number from the edge, or the AS name from geo enrichment when the edge had none).
-- A building block, not a standalone finding: a hosting or VPN AS carries crowds of unrelated
-- customers (corporate egress, consumer VPN, cloud CI, proxy services), so its risk stays context
-- (below 20) and it never links accounts; ring_clustering weighs a shared hosting AS together with the
-- other kinds of link.

with asn_events as not materialized (
    -- the AS's requests, as network_crowds reads them (sql/views/network_crowds.sql). Not materialized:
    -- both readers keep few rows and columns, so two scans of the shared table cost less than a copy
    select
        asn_key as shared_key,
        time_bucket(to_minutes($window_minutes), event_time) as window_start,
        account_id,
        org_key,
        asn_type
    from events_enriched
    where asn_key is not null
),

crowded_asns as (
    select *
    from network_crowds(
        asn_events, $anonymizer_asn_types, $ordinary_network_weight, $min_weighted_accounts,
        $hydra_weighted_accounts, $min_distinct_orgs, $weight_crowd, $weight_anonymizer
    )
),

asn_windows as (
    -- the requests and network types ([] when none is known) of each crowded window
    select
        shared_key,
        window_start,
        count(*) as requests,
        coalesce(list_sort(list(distinct asn_type) filter (where asn_type is not null)), []) as asn_types
    from asn_events
    semi join crowded_asns using (shared_key, window_start)
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
    distinct_accounts,
    distinct_orgs,
    round(weighted_accounts, 2) as weighted_accounts,
    asn_types
from crowded_asns
inner join asn_windows using (shared_key, window_start)
order by window_start, shared_key
