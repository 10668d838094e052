-- restricted_region_access: accounts reaching the API from a country on the restricted list in force
-- at the time of the request. One row per account per $window_minutes window.
-- Escalates to critical when the same account also comes through anonymizing exits (VPN, hosting,
-- Tor) outside the restricted list around the same time: the evasion pattern of hiding the real
-- location most of the time and slipping once.
-- Served access from a restricted country is a compliance incident whatever the intent, so it is high
-- and immediate. The exception is GeoIP noise: one or two requests geolocated to a restricted country
-- amid an account's traffic from elsewhere (a carrier gateway or a mis-placed line), with no evasion,
-- stays a low-risk signal for the compliance report rather than a page.

with restricted_events as (
    -- The reference list is dated: an event counts only under a row in force at its own event time.
    select
        events.account_id,
        events.event_time,
        events.source_ip,
        events.country,
        restricted.regime,
        restricted.basis,
        events.status_code,
        time_bucket(to_minutes($window_minutes), events.event_time) as window_start
    from events_enriched as events
    inner join restricted_countries as restricted
        on events.country = restricted.country_code
        and in_force(events.event_time, restricted.effective_from, restricted.effective_to)
),

account_windows as (
    select
        account_id,
        window_start,
        window_start + to_minutes($window_minutes) as window_end,
        count(*) as restricted_requests,
        count(*) filter (where status_code < 400) as served_requests,
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

nearby_events as (
    -- the account's requests around each restricted window, each with the restriction in force at its
    -- own time if any (restricted_country_code is null: not restricted then)
    select
        windows.account_id,
        windows.window_start,
        events.source_ip,
        events.country,
        events.asn_type,
        restricted.country_code as restricted_country_code
    from account_windows as windows
    inner join events_enriched as events
        on events.account_id = windows.account_id
        and events.event_time >= windows.first_seen - to_hours($evasion_lookback_hours)
        and events.event_time <= windows.last_seen + to_hours($evasion_lookback_hours)
    left join restricted_countries as restricted
        on events.country = restricted.country_code
        and in_force(events.event_time, restricted.effective_from, restricted.effective_to)
),

anonymized_elsewhere as (
    -- Events of the same account via anonymizing exits whose country is not restricted at that time
    -- (unknown country included: anonymizers often have no reliable geo), near the restricted access.
    select
        account_id,
        window_start,
        list_sort(list(distinct source_ip)) as evasion_exit_ips,
        list_sort(list(distinct country) filter (where country is not null)) as evasion_exit_countries,
        count(*) as evasion_requests
    from nearby_events
    where list_contains($anonymizer_asn_types, asn_type)
        and restricted_country_code is null
    group by account_id, window_start
),

account_context as (
    -- the account's restricted and total requests around the window: an isolated geolocation among
    -- traffic from elsewhere is GeoIP noise territory
    select
        account_id,
        window_start,
        count(*) filter (where restricted_country_code is not null) as nearby_restricted_requests,
        count(*) as nearby_requests
    from nearby_events
    group by account_id, window_start
),

scored as (
    select
        windows.*,
        elsewhere.account_id is not null as evasion_detected,
        coalesce(elsewhere.evasion_requests, 0) as evasion_requests,
        coalesce(elsewhere.evasion_exit_ips, []) as evasion_exit_ips,
        coalesce(elsewhere.evasion_exit_countries, []) as evasion_exit_countries,
        context.nearby_restricted_requests,
        context.nearby_requests,
        elsewhere.account_id is null
            and context.nearby_restricted_requests <= $max_isolated_requests
            and context.nearby_restricted_requests <= $max_isolated_share * context.nearby_requests
            as isolated_geolocation
    from account_windows as windows
    inner join account_context as context using (account_id, window_start)
    left join anonymized_elsewhere as elsewhere
        on windows.account_id = elsewhere.account_id
        and windows.window_start = elsewhere.window_start
),

risked as (
    select
        *,
        case
            when evasion_detected then $evasion_risk
            when isolated_geolocation then $isolated_risk
            else $served_risk
        end as risk_score
    from scored
)

select
    account_id as entity_id,
    [account_id] as account_ids,
    window_start,
    window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    -- served access (not noise) is a compliance incident at once
    served_requests > 0 and not isolated_geolocation as immediate,
    restricted_requests,
    served_requests,
    first_seen,
    last_seen,
    restricted_countries,
    restricted_source_ips,
    regimes,
    bases,
    evasion_detected,
    evasion_requests,
    evasion_exit_ips,
    evasion_exit_countries,
    isolated_geolocation,
    nearby_restricted_requests,
    nearby_requests
from risked
order by window_start, account_id
