-- restricted_region_access: accounts reaching the API from a country on the restricted list in force
-- at the time of the request. One row per account per $window_minutes window.
-- Escalates to critical when the same account also comes through anonymizing exits (VPN, hosting,
-- Tor) outside the restricted list around the same time: the evasion pattern of hiding the real
-- location most of the time and slipping once.

with restricted_events as (
    -- The reference list is dated: an event counts only under a row effective at its own event time,
    -- so re-running over old partitions gives the answer that was right back then.
    select
        events.account_id,
        events.event_time,
        events.source_ip,
        events.country,
        restricted.regime,
        restricted.basis,
        time_bucket(to_minutes($window_minutes), events.event_time) as window_start
    from events_enriched as events
    inner join restricted_countries as restricted
        on events.country = restricted.country_code
        and events.event_time >= restricted.effective_from
        and (restricted.effective_to is null or events.event_time < restricted.effective_to)
),

account_windows as (
    select
        account_id,
        window_start,
        window_start + to_minutes($window_minutes) as window_end,
        count(*) as restricted_requests,
        min(event_time) as first_seen,
        max(event_time) as last_seen,
        list_sort(list(distinct country)) as restricted_countries,
        list_sort(list(distinct source_ip)) as restricted_source_ips,
        list_sort(list(distinct regime)) as regimes,
        list_sort(list(distinct basis)) as bases
    from restricted_events
    group by account_id, window_start
    having count(*) >= $min_requests
),

anonymized_elsewhere as (
    -- Events of the same account via anonymizing exits whose country is not restricted at that time
    -- (unknown country included: anonymizers often have no reliable geo), near the restricted access.
    select
        windows.account_id,
        windows.window_start,
        list_sort(list(distinct events.source_ip)) as evasion_exit_ips,
        list_sort(list(distinct events.country) filter (where events.country is not null))
            as evasion_exit_countries,
        count(*) as evasion_requests
    from account_windows as windows
    inner join events_enriched as events
        on events.account_id = windows.account_id
        and events.event_time >= windows.first_seen - to_hours($evasion_lookback_hours)
        and events.event_time <= windows.last_seen + to_hours($evasion_lookback_hours)
        and list_contains($anonymizer_asn_types, events.asn_type)
    left join restricted_countries as restricted
        on events.country = restricted.country_code
        and events.event_time >= restricted.effective_from
        and (restricted.effective_to is null or events.event_time < restricted.effective_to)
    where restricted.country_code is null
    group by windows.account_id, windows.window_start
)

select
    windows.account_id as entity_id,
    [windows.account_id] as account_ids,
    windows.window_start,
    windows.window_end,
    -- null keeps the detection's default severity (high)
    case when elsewhere.account_id is not null then 'critical' end as severity,
    windows.restricted_requests,
    windows.first_seen,
    windows.last_seen,
    windows.restricted_countries,
    windows.restricted_source_ips,
    windows.regimes,
    windows.bases,
    elsewhere.account_id is not null as evasion_detected,
    coalesce(elsewhere.evasion_requests, 0) as evasion_requests,
    coalesce(elsewhere.evasion_exit_ips, []) as evasion_exit_ips,
    coalesce(elsewhere.evasion_exit_countries, []) as evasion_exit_countries
from account_windows as windows
left join anonymized_elsewhere as elsewhere
    on windows.account_id = elsewhere.account_id
    and windows.window_start = elsewhere.window_start
order by windows.window_start, windows.account_id
