-- ring_clustering: connected components of accounts linked by shared suspicious resources - an
-- anonymizing IP, a hosting/Tor AS, a payment method, a prompt template (each shared across different
-- organisations) or a synchronized-traffic group. One alert per ring naming every member: the hydra.
-- The graph is bipartite (account - resource) rather than account pairs, so a resource shared by
-- 20,000 accounts is 20,000 edges, not 200 million.

with recursive windowed_events as (
    select
        *,
        time_bucket(to_hours($window_hours), event_time) as window_start,
        coalesce(org_id, 'no-org:' || account_id) as org_key
    from events_enriched
),

resource_links as (
    select window_start, account_id, org_key, 'hosting_ip' as edge_type, source_ip as resource
    from windowed_events
    where list_contains($anonymizer_asn_types, asn_type)
    union
    select window_start, account_id, org_key, 'hosting_asn', asn_key
    from windowed_events
    where list_contains($hosting_asn_types, asn_type) and asn_key is not null
    union
    select window_start, account_id, org_key, 'payment', payment_fingerprint
    from windowed_events
    where payment_fingerprint is not null
    union
    -- a template needs repeated use by an account to link it (one stray request is noise)
    select window_start, account_id, any_value(org_key), 'template', prompt_fingerprint
    from windowed_events
    where prompt_fingerprint is not null
    group by window_start, account_id, prompt_fingerprint
    having count(*) >= $min_template_requests
),

sync_links as (
    select
        members.window_start,
        members.account_id,
        coalesce(orgs.org_id, 'no-org:' || members.account_id) as org_key,
        'synchronized' as edge_type,
        members.group_key as resource
    from synchronized_accounts(
        $window_hours, $sync_max_active_share, $sync_min_active_minutes, $sync_min_jaccard, $sync_min_accounts
    ) as members
    left join (
        select account_id, any_value(org_id) as org_id from events_enriched group by account_id
    ) as orgs using (account_id)
),

all_links as (
    select * from resource_links
    union all
    select * from sync_links
),

shared_resources as (
    -- only resources shared across organisations bind accounts: corporate NAT, a company card or a
    -- team template are one org and link nothing
    select window_start, edge_type, resource
    from all_links
    group by window_start, edge_type, resource
    having count(distinct org_key) >= $min_resource_orgs
),

edges as (
    select distinct links.window_start, links.account_id, links.edge_type || ':' || links.resource as node
    from all_links as links
    semi join shared_resources using (window_start, edge_type, resource)
),

components (window_start, account_id, label) using key (window_start, account_id) as (
    -- iterative label propagation: every account starts as its own label and repeatedly takes the
    -- smallest label among accounts sharing a resource with it, until nothing changes
    select distinct window_start, account_id, account_id from edges
    union
    select candidates.window_start, candidates.account_id, candidates.label
    from (
        select edges.window_start, edges.account_id, min(node_labels.label) as label
        from edges
        inner join (
            select edges.window_start, edges.node, min(current_labels.label) as label
            from edges
            inner join recurring.components as current_labels using (window_start, account_id)
            group by edges.window_start, edges.node
        ) as node_labels using (window_start, node)
        group by edges.window_start, edges.account_id
    ) as candidates
    inner join recurring.components as current_labels using (window_start, account_id)
    where candidates.label < current_labels.label
),

rings as (
    select window_start, label, count(*) as ring_size, list_sort(list(account_id)) as account_ids
    from components
    group by window_start, label
    having count(*) >= $min_ring_accounts
),

ring_edges as (
    select
        rings.window_start,
        rings.label,
        list_sort(list(distinct split_part(edges.node, ':', 1))) as edge_types,
        count(distinct edges.node) as binding_resources,
        count(distinct edges.node) filter (where edges.node like 'hosting_ip:%') as shared_ips,
        count(distinct edges.node) filter (where edges.node like 'payment:%') as shared_payments,
        count(distinct edges.node) filter (where edges.node like 'template:%') as shared_templates,
        count(distinct edges.node) filter (where edges.node like 'synchronized:%') as synchronized_groups
    from rings
    inner join components using (window_start, label)
    inner join edges using (window_start, account_id)
    group by rings.window_start, rings.label
),

ring_volume as (
    select
        rings.window_start,
        rings.label,
        count(*) as requests,
        sum(windowed_events.output_tokens) as output_tokens,
        count(distinct windowed_events.org_key) as distinct_orgs,
        min(windowed_events.event_time) as first_seen,
        max(windowed_events.event_time) as last_seen
    from rings
    inner join components using (window_start, label)
    inner join windowed_events using (window_start, account_id)
    group by rings.window_start, rings.label
)

select
    'ring:' || rings.label as entity_id,
    rings.account_ids,
    rings.window_start,
    rings.window_start + to_hours($window_hours) as window_end,
    case when rings.ring_size >= $critical_ring_accounts then 'critical' end as severity,
    rings.ring_size,
    ring_volume.requests,
    ring_volume.output_tokens,
    ring_volume.distinct_orgs,
    ring_edges.edge_types,
    ring_edges.binding_resources,
    ring_edges.shared_ips,
    ring_edges.shared_payments,
    ring_edges.shared_templates,
    ring_edges.synchronized_groups,
    ring_volume.first_seen,
    ring_volume.last_seen
from rings
inner join ring_edges using (window_start, label)
inner join ring_volume using (window_start, label)
order by rings.window_start, rings.ring_size desc, entity_id
