-- shared_hosting_infrastructure: one hosting/VPN/Tor IP used by many accounts of many different
-- organisations within one window: the proxy ("hydra") clusters distillation rings hide behind.
-- One row per IP per $window_minutes window. Corporate NAT (many accounts of one org behind one
-- office IP) stays quiet twice over: business IPs are not anonymizers, and one org fails $min_distinct_orgs.

with anonymizer_events as (
    -- Tumbling windows: a burst straddling a boundary is split in two; each half must pass on its own,
    -- which only matters for rings right at the threshold.
    select
        source_ip,
        asn,
        asn_type,
        country,
        account_id,
        -- An account without an organisation is an organisation of its own, so a ring of throw-away
        -- accounts without orgs counts as many orgs.
        coalesce(org_id, 'no-org:' || account_id) as org_key,
        prompt_fingerprint,
        payment_fingerprint,
        event_time,
        time_bucket(to_minutes($window_minutes), event_time) as window_start
    from events_enriched
    where list_contains($asn_types, asn_type)
),

ip_windows as (
    select
        source_ip,
        window_start,
        window_start + to_minutes($window_minutes) as window_end,
        count(*) as requests,
        count(distinct account_id) as distinct_accounts,
        count(distinct org_key) as distinct_orgs,
        list_sort(list(distinct account_id)) as account_ids,
        list_sort(list(distinct asn) filter (where asn is not null)) as asns,
        list_sort(list(distinct asn_type)) as asn_types,
        list_sort(list(distinct country) filter (where country is not null)) as countries,
        -- shared templates or payment methods across "unrelated" accounts strengthen the ring hypothesis
        count(distinct prompt_fingerprint) as distinct_prompt_fingerprints,
        count(distinct payment_fingerprint) as distinct_payment_fingerprints,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from anonymizer_events
    group by source_ip, window_start
)

select
    source_ip as entity_id,
    account_ids,
    window_start,
    window_end,
    case when distinct_accounts >= $critical_distinct_accounts then 'critical' end as severity,
    requests,
    distinct_accounts,
    distinct_orgs,
    asns,
    asn_types,
    countries,
    distinct_prompt_fingerprints,
    distinct_payment_fingerprints,
    first_seen,
    last_seen
from ip_windows
where distinct_accounts >= $min_distinct_accounts
    and distinct_orgs >= $min_distinct_orgs
order by window_start, source_ip
