-- impossible_travel: two consecutive requests of one account from places too far apart for the time
-- between them. One row per offending hop (the runner folds hops of one account within the
-- suppression window into one alert). Anonymizing exits on either side downgrade the hop to info:
-- a VPN's geo is the exit's, not the user's.

with constants as (
    -- Mean Earth radius (IUGG), km: the haversine sphere approximation errs < 0.5 %, plenty for GeoIP.
    select 6371.0088 as earth_radius_km
),

located_events as (
    -- Events without coordinates cannot place the account; they are skipped rather than breaking a hop.
    select event_id, account_id, event_time, source_ip, country, latitude, longitude, asn_type
    from events_enriched
    where latitude is not null and longitude is not null
),

hops as (
    -- event_id breaks timestamp ties so equal-time events always pair up the same way.
    select
        account_id,
        lag(event_time) over account_timeline as from_time,
        event_time as to_time,
        lag(source_ip) over account_timeline as from_ip,
        source_ip as to_ip,
        lag(country) over account_timeline as from_country,
        country as to_country,
        lag(latitude) over account_timeline as from_latitude,
        lag(longitude) over account_timeline as from_longitude,
        latitude as to_latitude,
        longitude as to_longitude,
        lag(asn_type) over account_timeline as from_asn_type,
        asn_type as to_asn_type
    from located_events
    window account_timeline as (partition by account_id order by event_time, event_id)
),

measured_hops as (
    -- Haversine great-circle distance.
    select
        hops.*,
        2 * constants.earth_radius_km * asin(sqrt(
            pow(sin(radians(to_latitude - from_latitude) / 2), 2)
            + cos(radians(from_latitude)) * cos(radians(to_latitude))
            * pow(sin(radians(to_longitude - from_longitude) / 2), 2)
        )) as distance_km,
        epoch_ms(to_time) - epoch_ms(from_time) as elapsed_ms
    from hops
    cross join constants
    where from_time is not null
),

fast_hops as (
    -- Zero elapsed time over a real distance is infinitely fast: it alerts, with speed_kmh null
    -- (JSON has no infinity). Hops under $min_distance_km are GeoIP noise between nearby cities.
    select
        *,
        case when elapsed_ms > 0 then distance_km / (elapsed_ms / 3600000.0) end as speed_kmh
    from measured_hops
    where distance_km >= $min_distance_km
        and (elapsed_ms = 0 or distance_km / (elapsed_ms / 3600000.0) > $max_speed_kmh)
)

select
    account_id as entity_id,
    [account_id] as account_ids,
    from_time as window_start,
    -- window_end is exclusive in the alert contract; the arriving request must be inside it
    to_time + interval 1 millisecond as window_end,
    case
        when list_contains($anonymizer_asn_types, from_asn_type)
            or list_contains($anonymizer_asn_types, to_asn_type)
            then 'info'
    end as severity,
    from_ip,
    to_ip,
    from_country,
    to_country,
    from_latitude,
    from_longitude,
    to_latitude,
    to_longitude,
    from_asn_type,
    to_asn_type,
    round(distance_km, 1) as distance_km,
    elapsed_ms / 1000.0 as elapsed_seconds,
    round(speed_kmh, 1) as speed_kmh,
    speed_kmh is null as simultaneous
from fast_hops
order by from_time, account_id
