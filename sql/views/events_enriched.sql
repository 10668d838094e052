-- events_enriched: every event with the gaps the edge left filled at query time, and the keys detections
-- group by. One definition for the detections and for analysts (`usagewatch sql`): the seven runbooks that
-- send an analyst here see exactly the rows the detection saw.
-- Null country or asn means the edge had no answer; anything else is the edge's (fresher) enrichment.
-- geoip_lookup is the Python UDF of pipelines/enrichment.py (geoip2fast's bundled GeoLite2 Country + ASN),
-- registered on the connection before this view is created.
create or replace view events_enriched as
with unresolved_ips as (
    -- one lookup per distinct address: a proxy IP with 10,000 events costs one call
    select distinct source_ip
    from events
    where country is null or asn is null
),

resolved_ips as (
    select source_ip, geoip_lookup(source_ip) as geo
    from unresolved_ips
)

select
    events.* replace (coalesce(events.country, resolved_ips.geo.country) as country),
    -- the database carries AS names but no AS numbers: group by the number when the edge sent one, else
    -- by the name
    case
        when events.asn is not null then 'AS' || events.asn
        when resolved_ips.geo.asn_name is not null then 'name:' || resolved_ips.geo.asn_name
    end as asn_key,
    -- "different organisations" in every detection: an account without an org counts as its own org, so
    -- unaffiliated strangers are never merged into one null org
    coalesce(events.org_id, 'no-org:' || events.account_id) as org_key,
    -- GeoIP's accuracy radius (km, 67 % confidence) when the edge sends it as the extra field
    -- geo_accuracy_km; the geography detections widen their tolerance by it. Unparseable means unknown.
    try_cast(json_extract_string(events.extras, '$.geo_accuracy_km') as double) as geo_accuracy_km,
    resolved_ips.geo.asn_name as geoip_asn_name,
    resolved_ips.geo.asn_prefix as geoip_asn_prefix,
    -- where the country came from: the edge, this lookup, or nobody
    case
        when events.country is not null then 'edge'
        when resolved_ips.geo.country is not null then 'geoip'
    end as country_source
from events
left join resolved_ips on events.source_ip = resolved_ips.source_ip
