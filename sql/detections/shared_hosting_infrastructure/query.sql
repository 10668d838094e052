-- shared_hosting_infrastructure: one hosting/VPN/Tor IP used by accounts of many different
-- organisations within one window, scored by how coordinated those accounts are. A proxy service, a
-- consumer VPN exit or a cloud NAT gateway carries crowds of unrelated customers, so the crowd alone is
-- context (below 20). What marks the ring behind it is coordination on the IP: accounts of different
-- organisations running the same prompt template or paying with the same card, and harvesting-shaped
-- content in their requests. The signal names those coordinated accounts only; the IP's other
-- customers are bystanders, counted in the evidence (bystander_accounts) but not implicated.
-- One row per IP per $window_minutes window. Corporate NAT stays quiet twice over: business IPs are
-- not anonymizers, and one org fails $min_distinct_orgs.

with anonymizer_events as (
    -- Tumbling windows: a burst straddling a boundary is split in two; each half must pass on its own,
    -- which only matters for rings right at the threshold.
    select
        source_ip,
        asn_key,
        asn_type,
        country,
        account_id,
        -- org_key (events_enriched): an account without an organisation is an organisation of its own, so
        -- a ring of throw-away accounts without orgs counts as many orgs.
        org_key,
        prompt_fingerprint,
        payment_fingerprint,
        input_tokens,
        output_tokens,
        list_contains(request_tags, 'reasoning_elicitation') as reasoning_requested,
        event_time,
        time_bucket(to_minutes($window_minutes), event_time) as window_start
    from events_enriched
    -- a semi join on the few types, not list_contains per event: the scan then reads the other columns
    -- of the ~8 % of events that pass only (-0.15 CPU-s at 10K accounts x 7 days)
    where asn_type in (select unnest($asn_types))
),

ip_windows as (
    select
        source_ip,
        window_start,
        window_start + to_minutes($window_minutes) as window_end,
        count(*) as requests,
        count(distinct account_id) as distinct_accounts,
        count(distinct org_key) as distinct_orgs,
        list_sort(list(distinct account_id)) as all_account_ids,
        list_sort(list(distinct asn_key) filter (where asn_key is not null)) as asns,
        list_sort(list(distinct asn_type)) as asn_types,
        list_sort(list(distinct country) filter (where country is not null)) as countries,
        count(distinct prompt_fingerprint) as distinct_prompt_fingerprints,
        count(distinct payment_fingerprint) as distinct_payment_fingerprints,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from anonymizer_events
    group by source_ip, window_start
),

crowded_ips as (
    select *
    from ip_windows
    where distinct_accounts >= $min_distinct_accounts
        and distinct_orgs >= $min_distinct_orgs
),

shared_values as (
    -- templates and cards that accounts of several organisations used on this IP in this window
    select source_ip, window_start, 'template:' || prompt_fingerprint as shared_value
    from anonymizer_events
    where prompt_fingerprint is not null
    group by source_ip, window_start, prompt_fingerprint
    having count(distinct org_key) >= $min_coordinated_orgs
    union all
    select source_ip, window_start, 'payment:' || payment_fingerprint
    from anonymizer_events
    where payment_fingerprint is not null
    group by source_ip, window_start, payment_fingerprint
    having count(distinct org_key) >= $min_coordinated_orgs
),

coordinated_events as (
    -- every request on the IP of an account that used one of those shared values there
    select anonymizer_events.*
    from anonymizer_events
    semi join (
        select distinct events.source_ip, events.window_start, events.account_id
        from anonymizer_events as events
        inner join shared_values
            on shared_values.source_ip = events.source_ip
            and shared_values.window_start = events.window_start
            and shared_values.shared_value in (
                'template:' || events.prompt_fingerprint, 'payment:' || events.payment_fingerprint
            )
    ) as coordinated using (source_ip, window_start, account_id)
),

coordination as (
    select
        source_ip,
        window_start,
        count(distinct account_id) as coordinated_accounts,
        list_sort(list(distinct account_id)) as coordinated_account_ids,
        sum(output_tokens) / greatest(sum(input_tokens), 1) as output_input_ratio,
        count(*) filter (where reasoning_requested) / count(*) as reasoning_share
    from coordinated_events
    group by source_ip, window_start
    having count(distinct account_id) >= $min_coordinated_accounts
),

features as (
    -- every feature in 0..1 (the scales of sql/views/risk_scales.sql clamp)
    select
        crowded_ips.*,
        coalesce(coordination.coordinated_accounts, 0) as coordinated_accounts,
        coordination.coordinated_account_ids,
        coordination.output_input_ratio,
        coordination.reasoning_share,
        -- crowd size on a log scale between the alerting floor and a hydra-sized crowd
        log_scale(crowded_ips.distinct_orgs, $min_distinct_orgs, $hydra_distinct_orgs) as crowd_f,
        coalesce(coordination.coordinated_accounts, 0) / crowded_ips.distinct_accounts as coordination_f,
        -- harvesting-shaped content of the coordinated accounts (0 without any)
        coalesce(harvest_content(
            coordination.output_input_ratio, coordination.reasoning_share,
            $ratio_normal, $ratio_suspicious, $reasoning_suspicious_share
        ), 0) as content_f
    from crowded_ips
    left join coordination using (source_ip, window_start)
),

scored as (
    select
        *,
        {
            'crowd': round($weight_crowd * crowd_f, 1),
            'coordination': round($weight_coordination * coordination_f, 1),
            'harvest_content': round($weight_content * content_f, 1)
        } as risk_factors
    from features
)

select
    source_ip as entity_id,
    -- the coordinated accounts when there are any: the bystanders of a proxy service are not implicated
    coalesce(coordinated_account_ids, all_account_ids) as account_ids,
    window_start,
    window_end,
    risk_severity(risk_factors.crowd + risk_factors.coordination + risk_factors.harvest_content) as severity,
    risk_factors.crowd + risk_factors.coordination + risk_factors.harvest_content as risk_score,
    risk_factors,
    requests,
    distinct_accounts,
    distinct_orgs,
    coordinated_accounts,
    distinct_accounts - coordinated_accounts as bystander_accounts,
    round(output_input_ratio, 2) as output_input_ratio,
    round(reasoning_share, 3) as reasoning_share,
    asns,
    asn_types,
    countries,
    distinct_prompt_fingerprints,
    distinct_payment_fingerprints,
    first_seen,
    last_seen
from scored
order by window_start, source_ip
