-- country_hopping: one account reaching the API from many countries within a short window over
-- ordinary (non-anonymizing) networks: a key shared across a residential-proxy pool, not a traveller.
-- One row per account per $window_minutes window.

with located_events as (
    -- VPN/hosting/Tor exits are chosen by the client, so their countries prove nothing about movement;
    -- unknown asn_type counts as ordinary (it is usually a residential line without intelligence data).
    select
        account_id,
        event_time,
        country,
        source_ip,
        time_bucket(to_minutes($window_minutes), event_time) as window_start
    from events_enriched
    where country is not null
        and not list_contains($anonymizer_asn_types, coalesce(asn_type, 'unknown'))
),

account_windows as (
    select
        account_id,
        window_start,
        window_start + to_minutes($window_minutes) as window_end,
        count(distinct country) as distinct_countries,
        list_sort(list(distinct country)) as countries,
        count(distinct source_ip) as distinct_ips,
        count(*) as requests,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from located_events
    group by account_id, window_start
)

select
    account_id as entity_id,
    [account_id] as account_ids,
    window_start,
    window_end,
    case when distinct_countries >= $high_countries then 'high' end as severity,
    distinct_countries,
    countries,
    distinct_ips,
    requests,
    first_seen,
    last_seen
from account_windows
where distinct_countries >= $min_countries
order by window_start, account_id
