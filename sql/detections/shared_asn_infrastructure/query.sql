-- shared_asn_infrastructure: many accounts of many organisations inside one autonomous system within a
-- window, weighted by the AS's kind: a hosting/VPN/Tor AS is where proxy clusters live, while every
-- residential ISP legitimately serves thousands of customers, so their accounts count only a fraction.
-- Groups by asn_key (AS number from the edge, or the AS name from geo enrichment when the edge had none).
-- A building block, not a standalone finding: a hosting or VPN AS carries crowds of unrelated
-- customers (corporate egress, consumer VPN, cloud CI, proxy services), so its risk stays context
-- (below 20) and it never links accounts; ring_clustering weighs a shared hosting AS together with the
-- other kinds of link.

with account_networks as (
    -- one row per account and AS window: only plain aggregates here (the distinct ones are the costly part
    -- of this step and are computed below for crowded windows only)
    select
        asn_key,
        time_bucket(to_minutes($window_minutes), event_time) as window_start,
        account_id,
        any_value(org_key) as org_key,
        -- an account counts fully if any of its requests through this AS came via an anonymizer
        max(network_weight(asn_type, $anonymizer_asn_types, $ordinary_network_weight)) as weight,
        count(*) as requests
    from events_enriched
    where asn_key is not null
    group by asn_key, window_start, account_id
),

asn_windows as (
    select
        asn_key,
        window_start,
        window_start + to_minutes($window_minutes) as window_end,
        count(*) as distinct_accounts,
        count(distinct org_key) as distinct_orgs,
        sum(weight) as weighted_accounts,
        sum(requests) as requests,
        list_sort(list(account_id)) as account_ids
    from account_networks
    group by asn_key, window_start
    having sum(weight) >= $min_weighted_accounts
        and count(distinct org_key) >= $min_distinct_orgs
),

asn_window_types as (
    -- the network types seen in each crowded window ([] when none is known)
    select
        asn_key,
        window_start,
        coalesce(list_sort(list(distinct asn_type) filter (where asn_type is not null)), []) as asn_types
    from (
        select asn_key, time_bucket(to_minutes($window_minutes), event_time) as window_start, asn_type
        from events_enriched
        where asn_key is not null
    ) as asn_events
    semi join asn_windows using (asn_key, window_start)
    group by asn_key, window_start
),

scored as (
    select
        *,
        {
            -- crowd size on a log scale between the alerting floor and a hydra-sized crowd
            'crowd': round($weight_crowd
                * log_scale(weighted_accounts, $min_weighted_accounts, $hydra_weighted_accounts), 1),
            'anonymizer_share': round($weight_anonymizer * weighted_accounts / distinct_accounts, 1)
        } as risk_factors
    from asn_windows
    inner join asn_window_types using (asn_key, window_start)
)

select
    asn_key as entity_id,
    account_ids,
    window_start,
    window_end,
    risk_severity(risk_factors.crowd + risk_factors.anonymizer_share) as severity,
    risk_factors.crowd + risk_factors.anonymizer_share as risk_score,
    risk_factors,
    requests,
    distinct_accounts,
    distinct_orgs,
    round(weighted_accounts, 2) as weighted_accounts,
    asn_types
from scored
order by window_start, asn_key
