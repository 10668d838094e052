-- shared_indicator_match: accounts using what a peer provider shared as a model-distillation campaign's
-- indicators (`usagewatch indicators import`, table shared_indicators; pipelines/exports/indicators.py).
-- One signal per peer campaign (its STIX report) and window, naming every account whose matches weigh at
-- least $min_account_weight. A peer's payment or prompt-template fingerprint belongs to the campaign
-- alone, so it is conclusive; an exit IP, its block and its AS describe one network path shared with the
-- exit's ordinary customers, so they count once, at the strongest, and name an account only together with
-- another kind of match (a user agent only the campaign used at the peer, a fingerprint).

with indicator_values as (
    select distinct
        kind,
        value,
        -- an indicator outside any report is its own campaign
        coalesce(report_id, indicator_id) as campaign_id,
        coalesce(report_name, 'indicators of ' || coalesce(producer, 'a peer')) as campaign_name,
        producer
    from shared_indicators
),

event_values as (
    -- each event's values in the form the indicators carry them: fingerprints as their SHA-256, the
    -- AS as its number, the address's imported block from shared_indicator_networks
    select
        events.account_id,
        events.event_time,
        unnest([
            {'kind': 'ip', 'value': events.source_ip},
            {'kind': 'subnet', 'value': networks.value},
            {'kind': 'asn', 'value': cast(events.asn as varchar)},
            {'kind': 'payment', 'value': sha256(events.payment_fingerprint)},
            {'kind': 'template', 'value': sha256(events.prompt_fingerprint)},
            {'kind': 'user_agent', 'value': events.user_agent}
        ]) as observed
    from events_enriched as events
    left join shared_indicator_networks as networks on events.source_ip = networks.source_ip
    -- nothing imported: skip the scan (and the hashing) altogether
    where exists (select 1 from shared_indicators)
),

matches as (
    select
        event_values.account_id,
        time_bucket(to_hours($window_hours), event_values.event_time) as window_start,
        indicator_values.*
    from event_values
    join indicator_values
        on indicator_values.kind = event_values.observed.kind
        and indicator_values.value = event_values.observed.value
),

account_matches as (
    select
        campaign_id,
        window_start,
        account_id,
        any_value(campaign_name) as campaign_name,
        any_value(producer) as producer,
        list_sort(list(distinct kind)) as kinds,
        list_sort(list(distinct kind || ':' || value)) as matched,
        count(*) as matching_events
    from matches
    group by campaign_id, window_start, account_id
),

account_weights as (
    select
        *,
        -- the network path counts once, at its strongest kind
        greatest(
            if(list_contains(kinds, 'ip'), $weight_ip, 0),
            if(list_contains(kinds, 'subnet'), $weight_subnet, 0),
            if(list_contains(kinds, 'asn'), $weight_asn, 0)
        )
        + if(list_contains(kinds, 'user_agent'), $weight_user_agent, 0)
        + if(list_contains(kinds, 'payment'), $weight_payment, 0)
        + if(list_contains(kinds, 'template'), $weight_template, 0) as weight
    from account_matches
),

campaign_windows as (
    select
        campaign_id,
        window_start,
        window_start + to_hours($window_hours) as window_end,
        any_value(campaign_name) as campaign_name,
        any_value(producer) as producer,
        list_sort(list(account_id)) as account_ids,
        count(*) as distinct_accounts,
        list_sort(list_distinct(flatten(list(kinds)))) as matched_kinds,
        list_sort(list_distinct(flatten(list(matched))))[1:$max_listed_indicators] as matched_indicators,
        sum(matching_events) as matching_events,
        max(weight) as strongest_account_weight
    from account_weights
    where weight >= $min_account_weight
    group by campaign_id, window_start
)

select
    'shared:' || campaign_id as entity_id,
    account_ids,
    window_start,
    window_end,
    risk_severity(least(strongest_account_weight, 100)) as severity,
    least(strongest_account_weight, 100) as risk_score,
    least(strongest_account_weight, 100) >= $immediate_min_risk as immediate,
    producer,
    campaign_name,
    distinct_accounts,
    matched_kinds,
    matched_indicators,
    matching_events
from campaign_windows
order by window_start, entity_id
