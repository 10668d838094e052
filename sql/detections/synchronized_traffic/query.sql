-- synchronized_traffic: accounts whose per-minute activity moves together (active in the same minutes,
-- silent in the same minutes) although nothing else links them: every IP and ASN may differ. One
-- controller scheduling many accounts leaves this rhythm. One row per synchronized group per window;
-- the candidate bucketing that keeps this tractable lives in sql/views/synchronized_accounts.sql.
-- Scored by evidence (risk_factors): a verified lockstep group is strong on its own (a minute-by-minute
-- rhythm shared by strangers is rare), tighter similarity, more members and members on many different
-- networks (nothing else in common) raise it; the group links its members into one campaign.

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

group_members as (
    -- one row per member, so the members' events are found by an equi-join on the account rather than
    -- a list_contains test of every event against every group
    select group_key, window_start, window_end, unnest(account_ids) as account_id
    from groups
),

group_networks as (
    -- how diverse the members' networks are: synchronization across many ASNs is the strong signal
    select
        group_members.group_key,
        group_members.window_start,
        count(distinct events.source_ip) as distinct_ips,
        count(distinct events.asn_key) as distinct_asns,
        count(distinct events.country) as distinct_countries,
        count(*) as requests
    from group_members
    inner join events_enriched as events
        on events.account_id = group_members.account_id
        and events.event_time >= group_members.window_start
        and events.event_time < group_members.window_end
    group by group_members.group_key, group_members.window_start
),

scored as (
    -- every feature in 0..1; greatest(least(...)) clamps
    select
        groups.*,
        group_networks.requests,
        group_networks.distinct_ips,
        group_networks.distinct_asns,
        group_networks.distinct_countries,
        {
            'lockstep': $base_risk,
            'similarity': round($weight_similarity * greatest(least(
                (groups.mean_jaccard - $min_jaccard) / (1 - $min_jaccard), 1), 0), 1),
            'group_size': round($weight_size * log_scale(groups.group_size, $min_accounts, $large_group_accounts), 1),
            -- one AS per member: nothing but the clock binds them (a company's cron fleet shares its egress)
            'network_diversity': round($weight_diversity * group_networks.distinct_asns / groups.group_size, 1)
        } as risk_factors
    from groups
    inner join group_networks using (group_key, window_start)
),

totals as (
    select
        *,
        least(
            risk_factors.lockstep + risk_factors.similarity + risk_factors.group_size
            + risk_factors.network_diversity,
            100
        ) as risk_score
    from scored
)

select
    'sync:' || group_key as entity_id,
    account_ids,
    window_start,
    window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    risk_factors,
    group_size,
    mean_jaccard,
    consensus_minutes,
    requests,
    distinct_ips,
    distinct_asns,
    distinct_countries
from totals
order by window_start, entity_id
