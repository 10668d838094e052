-- synchronized_traffic: accounts whose per-minute activity moves together (active in the same minutes,
-- silent in the same minutes) although nothing else links them: every IP and ASN may differ. One
-- controller scheduling many accounts leaves this rhythm. One row per synchronized group per window;
-- the candidate bucketing that keeps this tractable lives in sql/views/synchronized_accounts.sql.

with members as (
    select *
    from synchronized_accounts(
        $window_hours, $max_active_share, $min_active_minutes, $min_jaccard, $min_accounts
    )
),

groups as (
    select
        group_key,
        window_start,
        any_value(window_end) as window_end,
        count(*) as group_size,
        list_sort(list(account_id)) as account_ids,
        round(avg(jaccard), 3) as mean_jaccard,
        max(consensus_minute_count) as consensus_minutes
    from members
    group by group_key, window_start
    having count(*) >= $min_accounts
),

group_networks as (
    -- how diverse the members' networks are: synchronization across many ASNs is the strong signal
    select
        groups.group_key,
        groups.window_start,
        count(distinct events.source_ip) as distinct_ips,
        count(distinct events.asn_key) as distinct_asns,
        count(distinct events.country) as distinct_countries,
        count(*) as requests
    from groups
    inner join events_enriched as events
        on list_contains(groups.account_ids, events.account_id)
        and events.event_time >= groups.window_start
        and events.event_time < groups.window_end
    group by groups.group_key, groups.window_start
)

select
    'sync:' || groups.group_key as entity_id,
    groups.account_ids,
    groups.window_start,
    groups.window_end,
    case when groups.group_size >= $critical_accounts then 'critical' end as severity,
    groups.group_size,
    groups.mean_jaccard,
    groups.consensus_minutes,
    group_networks.requests,
    group_networks.distinct_ips,
    group_networks.distinct_asns,
    group_networks.distinct_countries
from groups
inner join group_networks using (group_key, window_start)
order by groups.window_start, entity_id
