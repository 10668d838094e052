-- country_hopping: one account reaching the API from many far-apart countries within a short window
-- over ordinary (non-anonymizing) networks: a key shared across a residential-proxy pool, not a
-- traveller. One signal per account per $window_minutes window, risk rising with every region beyond
-- the first two. What is not evidence: countries the account or its org used in the last
-- $known_location_days days (known places), land neighbours of a country already counted (GeoIP near
-- a border, road trips), and countries seen only through a mobile carrier's or a company's gateway
-- (roaming gateways, regional corporate egress) count $shared_egress_country_weight.

with located_events as (
    -- VPN/hosting/Tor exits are chosen by the client, so their countries prove nothing about movement;
    -- unknown asn_type counts as ordinary (it is usually a residential line without intelligence data).
    select
        account_id,
        org_id,
        event_time,
        country,
        source_ip,
        asn_type,
        time_bucket(to_minutes($window_minutes), event_time) as window_start
    from events_enriched
    where country is not null
        and not list_contains($anonymizer_asn_types, coalesce(asn_type, 'unknown'))
),

hopping_accounts as (
    -- A window alerts on new countries weighing $min_regions, and a country weighs at most
    -- greatest(1, $shared_egress_country_weight): an account with fewer countries than that in the whole
    -- lake cannot alert and skips the per-window work below (most accounts: one home country).
    select account_id
    from located_events
    group by account_id
    having count(distinct country) * greatest(1.0, $shared_egress_country_weight) >= $min_regions
),

window_countries as (
    select
        account_id,
        any_value(org_id) as org_id,
        window_start,
        country,
        -- a country reached over any residential/unknown line counts fully; gateway-only counts less
        max(case when list_contains($shared_egress_asn_types, asn_type) then $shared_egress_country_weight else 1.0 end)
            as weight,
        -- the latest time the account was in this country before this window
        lag(max(event_time)) over (partition by account_id, country order by window_start) as previous_seen
    from located_events
    semi join hopping_accounts using (account_id)
    group by account_id, window_start, country
),

candidate_countries as (
    -- Only new countries count and no weight is negative, so a window whose countries all together
    -- weigh less than $min_regions cannot alert: the org's history is looked up for the others only.
    select *
    from window_countries
    qualify sum(weight) over (partition by account_id, window_start) >= $min_regions
),

org_country_windows as (
    -- the same per org: every account's window-country row has its org's row, whose predecessor is the
    -- org's latest visit before the window (the account's own events included: they count as the
    -- account's). Whole (org, country) histories of the candidates only, so every lag is complete.
    select
        org_id,
        country,
        window_start,
        lag(max(event_time)) over (partition by org_id, country order by window_start) as previous_seen
    from located_events
    semi join (select distinct org_id, country from candidate_countries) as candidate_orgs using (org_id, country)
    group by org_id, country, window_start
),

new_countries as (
    -- known places: the account's own, or its org's, countries of the previous days are not evidence.
    -- "An earlier event of the account or of another account of its org" is "an earlier event of the
    -- account or of its org", and the latest one before the window decides: two keyed lags, not a
    -- correlated range search over every earlier event (quadratic in the lake).
    select current_country.* exclude (previous_seen)
    from candidate_countries as current_country
    left join org_country_windows as org_seen using (org_id, country, window_start)
    where coalesce(current_country.previous_seen < current_country.window_start - to_days($known_location_days), true)
        and coalesce(org_seen.previous_seen < current_country.window_start - to_days($known_location_days), true)
),

regions as (
    -- one region per set of bordering countries: a country counts unless a land neighbour with a smaller
    -- code is also in the window (a cheap stand-in for connected components; chains of 3+ neighbours
    -- may count once more than they should, which errs towards flagging)
    select *
    from new_countries
    where not exists (
        select 1
        from new_countries as neighbour
        inner join land_borders
            on land_borders.country_code = new_countries.country
            and land_borders.border_country_code = neighbour.country
        where neighbour.account_id = new_countries.account_id
            and neighbour.window_start = new_countries.window_start
            and neighbour.country < new_countries.country
    )
),

account_windows as (
    select
        regions.account_id,
        regions.window_start,
        sum(regions.weight) as weighted_regions,
        list_sort(list(regions.country)) as region_countries
    from regions
    group by regions.account_id, regions.window_start
    having sum(regions.weight) >= $min_regions
),

window_activity as (
    select
        account_id,
        window_start,
        count(distinct country) as distinct_countries,
        list_sort(list(distinct country)) as countries,
        count(distinct source_ip) as distinct_ips,
        count(*) as requests,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from located_events
    semi join account_windows using (account_id, window_start)
    group by account_id, window_start
),

scored as (
    select
        account_windows.*,
        window_activity.* exclude (account_id, window_start),
        least($risk_per_region * (account_windows.weighted_regions - $free_regions), $max_risk) as risk_score
    from account_windows
    inner join window_activity using (account_id, window_start)
)

select
    account_id as entity_id,
    [account_id] as account_ids,
    window_start,
    window_start + to_minutes($window_minutes) as window_end,
    risk_severity(risk_score) as severity,
    round(risk_score) as risk_score,
    round(weighted_regions, 2) as weighted_regions,
    region_countries,
    distinct_countries,
    countries,
    distinct_ips,
    requests,
    first_seen,
    last_seen
from scored
order by window_start, account_id
