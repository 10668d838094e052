-- impossible_travel: one account's consecutive requests from places too far apart for the time between
-- them, once GeoIP's own error is taken out. One signal per account per $window_hours window, scored:
-- a single move to a place nobody of the account (or its org) used recently is possible travel plus a
-- VPN the IP data missed (moderate risk); repeated alternation between far-apart places is one key used
-- in two places at once (key sharing, high risk). What GeoIP noise looks like, and is therefore left
-- out: hops inside one country or to a neighbouring one (unless very far), hops within the two accuracy
-- radii, and places the org already uses (corporate egress). VPN/hosting/Tor and mobile/business
-- egress downgrade a hop: their geo is a gateway's, not the person's.

with constants as (
    -- Mean Earth radius (IUGG), km: the haversine sphere approximation errs < 0.5 %, plenty for GeoIP.
    select 6371.0088 as earth_radius_km
),

country_points as (
    -- Where the lake's own geolocated traffic of each country sits. An event whose GeoIP answer is the
    -- country alone (no coordinates: the edge had none and the enrichment knows countries only) is placed
    -- there with a country-sized accuracy radius, so a key alternating between a city and a country-only
    -- line on another continent is still seen.
    select country, median(latitude) as latitude, median(longitude) as longitude
    from events_enriched
    where latitude is not null and longitude is not null and country is not null
    group by country
),

located_events as (
    -- Events with neither coordinates nor a country (or a country no other event places) cannot place
    -- the account; they are skipped rather than breaking a hop.
    select
        events.event_id,
        events.account_id,
        events.org_id,
        events.event_time,
        events.source_ip,
        events.country,
        coalesce(events.latitude, country_points.latitude) as latitude,
        coalesce(events.longitude, country_points.longitude) as longitude,
        events.asn_type,
        case
            when events.latitude is null then $country_only_accuracy_km
            else coalesce(events.geo_accuracy_km, $default_accuracy_km)
        end as accuracy_km
    from events_enriched as events
    left join country_points using (country)
    where coalesce(events.latitude, country_points.latitude) is not null
        and coalesce(events.longitude, country_points.longitude) is not null
),

mobile_accounts as (
    -- Only an account whose places lie further apart than their accuracy radii can make a hop, so the
    -- others skip the sort below (most accounts: one home, one city). No two points of a latitude /
    -- longitude box are further apart than its height plus its width (along a meridian, then along a
    -- parallel, neither longer than that side is at the equator), so an account is skipped when that
    -- bound, less its two smallest radii, stays under $min_distance_km: none of its hops could reach it.
    select located_events.account_id
    from located_events
    cross join constants
    group by located_events.account_id
    having not coalesce(
        any_value(constants.earth_radius_km) * radians(
            max(located_events.latitude) - min(located_events.latitude)
            + max(located_events.longitude) - min(located_events.longitude)
        ) - 2 * min(located_events.accuracy_km) < $min_distance_km,
        false
    )
),

hops as (
    -- event_id breaks timestamp ties so equal-time events always pair up the same way. One lag of the
    -- whole previous event: one window function instead of eight over the same sort.
    select
        account_id,
        org_id,
        event_id as to_event_id,
        previous.event_time as from_time,
        event_time as to_time,
        previous.source_ip as from_ip,
        source_ip as to_ip,
        previous.country as from_country,
        country as to_country,
        previous.latitude as from_latitude,
        previous.longitude as from_longitude,
        latitude as to_latitude,
        longitude as to_longitude,
        previous.asn_type as from_asn_type,
        asn_type as to_asn_type,
        previous.accuracy_km as from_accuracy_km,
        accuracy_km as to_accuracy_km
    from (
        select
            *,
            lag({
                'event_time': event_time, 'source_ip': source_ip, 'country': country, 'latitude': latitude,
                'longitude': longitude, 'asn_type': asn_type, 'accuracy_km': accuracy_km
            }) over (partition by account_id order by event_time, event_id) as previous
        from located_events
        semi join mobile_accounts using (account_id)
    ) as timeline
),

measured_hops as (
    -- Haversine great-circle distance; excess_km is what remains once both accuracy radii are spent
    -- (the two points may each sit anywhere inside their circle).
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

excess_hops as (
    select
        *,
        distance_km - from_accuracy_km - to_accuracy_km as excess_km,
        -- same country or a land neighbour: GeoIP spread and road trips, travel only when very far
        from_country = to_country
            or exists (
                select 1
                from land_borders
                where land_borders.country_code = measured_hops.from_country
                    and land_borders.border_country_code = measured_hops.to_country
            ) as nearby_countries
    from measured_hops
),

impossible_hops as (
    -- Zero elapsed time over a real distance is infinitely fast (speed_kmh null: JSON has no infinity).
    select
        *,
        case when elapsed_ms > 0 then excess_km / (elapsed_ms / 3600000.0) end as speed_kmh,
        -- how much the networks on either side let this hop count: an anonymizer's geo is the exit's,
        -- a carrier's or company's is a gateway's
        case
            when list_contains($anonymizer_asn_types, from_asn_type)
                or list_contains($anonymizer_asn_types, to_asn_type)
                then $anonymizer_factor
            when list_contains($shared_egress_asn_types, from_asn_type)
                or list_contains($shared_egress_asn_types, to_asn_type)
                then $shared_egress_factor
            else 1.0
        end as network_factor,
        list_contains($alternation_ignored_asn_types, from_asn_type)
            or list_contains($alternation_ignored_asn_types, to_asn_type) as through_gateway_pool,
        time_bucket(to_hours($window_hours), to_time) as window_start
    from excess_hops
    where excess_km >= $min_distance_km
        and (not nearby_countries or excess_km >= $nearby_far_km)
        and (elapsed_ms = 0 or excess_km / (elapsed_ms / 3600000.0) > $max_speed_kmh)
),

judged_hops as (
    -- known places: the account's own recent countries make a move "seen before" (no longer travel, but
    -- still alternation); another account of the same org there makes it corporate egress (neither)
    select
        impossible_hops.*,
        exists (
            select 1
            from located_events as earlier
            where earlier.account_id = impossible_hops.account_id
                and earlier.country = impossible_hops.to_country
                and earlier.event_time < impossible_hops.from_time
                and earlier.event_time >= impossible_hops.to_time - to_days($known_location_days)
        ) as known_to_account,
        exists (
            select 1
            from located_events as colleague
            where colleague.org_id = impossible_hops.org_id
                and colleague.account_id <> impossible_hops.account_id
                and colleague.country = impossible_hops.to_country
                and colleague.event_time <= impossible_hops.to_time
                and colleague.event_time >= impossible_hops.to_time - to_days($known_location_days)
        ) as known_to_org
    from impossible_hops
),

account_windows as (
    select
        account_id,
        window_start,
        count(*) as impossible_hops,
        -- alternation: hops back to a place the account itself used before, not through anonymizers or
        -- carrier gateways (their geo is an exit's, and a carrier's gateways lie continents apart). Office
        -- lines count: one key used from offices on two continents by turns is key sharing, while one
        -- company's own egresses are known_to_org. Inside one country (or to a neighbour) alternation is
        -- GeoIP's: a country-level answer puts a line at the country's centre, so home and office swap
        -- between a city and the centroid all day.
        count(*) filter (
            where not through_gateway_pool and not nearby_countries and known_to_account and not known_to_org
        )
            as alternating_hops,
        count(*) filter (where known_to_org) as org_known_hops,
        list_sort(list_distinct(flatten(list([from_country, to_country])))) as countries,
        -- a single move counts once: the strongest hop to a place new to both account and org
        max(network_factor) filter (where not known_to_account and not known_to_org) as new_place_factor,
        max(network_factor) filter (where not known_to_org) as strongest_factor,
        min(from_time) as first_hop_at,
        max(to_time) as last_hop_at,
        first(
            {
                'from_ip': from_ip, 'to_ip': to_ip, 'from_country': from_country, 'to_country': to_country,
                'from_asn_type': from_asn_type, 'to_asn_type': to_asn_type,
                'distance_km': round(distance_km, 1), 'excess_km': round(excess_km, 1),
                'elapsed_seconds': elapsed_ms / 1000.0, 'speed_kmh': round(speed_kmh, 1),
                'simultaneous': speed_kmh is null
            }
            -- the hop shown: ordinary networks first, then the longest beyond the error; of equals the
            -- earliest (arg_max picked any of them, so the evidence varied between runs)
            order by network_factor * 100000 + excess_km desc, to_time, to_event_id
        ) as strongest_hop
    from judged_hops
    group by account_id, window_start
),

scored as (
    select
        *,
        greatest(
            coalesce($travel_risk * new_place_factor, 0),
            case
                when alternating_hops >= $min_alternating_hops
                    then least(
                        $alternation_risk + $alternation_step_risk * (alternating_hops - $min_alternating_hops),
                        $max_alternation_risk
                    )
                else 0
            end,
            -- hops only among the org's own places, or only downgraded ones, stay context
            coalesce($travel_risk * strongest_factor * $known_place_factor, 0)
        ) as risk_score
    from account_windows
)

select
    account_id as entity_id,
    [account_id] as account_ids,
    first_hop_at as window_start,
    -- window_end is exclusive in the alert contract; the last arriving request must be inside it
    last_hop_at + interval 1 millisecond as window_end,
    risk_severity(risk_score) as severity,
    round(risk_score) as risk_score,
    impossible_hops,
    alternating_hops,
    alternating_hops >= $min_alternating_hops as key_sharing_suspected,
    org_known_hops,
    countries,
    strongest_hop.*
from scored
-- nothing left once known and downgraded hops are weighed: no signal at all
where risk_score > 0
order by first_hop_at, account_id
