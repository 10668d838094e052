-- ring_clustering: rings of accounts bound by several independent kinds of shared resource, one signal
-- per ring naming every member (the hydra as one finding). Kinds of link, each its own family:
-- anonymizing infrastructure (hosting/VPN/Tor IP, hosting/Tor AS), payment method, prompt template,
-- synchronized timing and client fingerprint (user agent). A shared value only counts across
-- organisations (a company card or team template links nothing) and weighs by its rarity, an IDF:
-- ln(P / n) / ln(P) for a value shared by n of P accounts (P at least $reference_population, so a small
-- lake does not make every value look common). Mobile, business and campus addresses never link:
-- carrier-grade and corporate NAT put thousands of strangers behind one IP.
-- A template links only as part of a script (its users also share other templates with each other): a
-- popular tool's default prompt comes alone, however rare it looks.
-- An account is a ring member when its links add up to $min_member_strength: no single kind except a
-- rare shared card gets there alone, so shared cloud egress, a popular
-- public template or a common SDK never make a ring. Members are then joined into rings through their
-- shared infrastructure, cards, templates and timing groups (the client fingerprint adds strength but
-- never joins rings: one SDK version is shared by unrelated campaigns; nor does a whole hosting AS, which
-- carries unrelated campaigns and their bystanders alike). A ring is reported only when the
-- kinds of link specific to it (values used mostly by its members) add up to $min_member_strength too.
-- The graph is bipartite (account - resource) rather than account pairs, so a resource shared by
-- 20,000 accounts is 20,000 edges, not 200 million.

with recursive account_values as (
    -- one row per account, window and combination of the values that can link it (address, AS, card,
    -- client): the links, the population and the rings' volume read this, not every event again
    select
        time_bucket(to_hours($window_hours), event_time) as window_start,
        account_id,
        org_key,
        source_ip,
        asn_type,
        asn_key,
        payment_fingerprint,
        user_agent,
        count(*) as requests,
        sum(output_tokens) as output_tokens,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from events_enriched
    group by all
),

population as (
    select window_start, greatest(count(distinct account_id), $reference_population) as accounts
    from account_values
    group by window_start
),

template_use as (
    select
        time_bucket(to_hours($window_hours), event_time) as window_start,
        account_id,
        any_value(org_key) as org_key,
        prompt_fingerprint,
        count(*) as requests
    from events_enriched
    where prompt_fingerprint is not null
    group by time_bucket(to_hours($window_hours), event_time), account_id, prompt_fingerprint
),

template_sizes as (
    select window_start, prompt_fingerprint, count(*) as accounts, count(distinct org_key) as orgs
    from template_use
    where requests >= $min_template_requests
    group by window_start, prompt_fingerprint
),

cross_org_use as (
    -- uses of templates shared across organisations: the only templates that can link
    select template_use.*
    from template_use
    semi join template_sizes as sizes
        on sizes.window_start = template_use.window_start
        and sizes.prompt_fingerprint = template_use.prompt_fingerprint
        and sizes.orgs >= $min_resource_orgs
),

cohesive_uses as (
    -- an account's use of a template is cohesive when it also shares another template with another
    -- user of this one, of another organisation: the two run one script
    select distinct template.window_start, template.prompt_fingerprint, template.account_id
    from cross_org_use as template
    inner join cross_org_use as companion
        on companion.window_start = template.window_start
        and companion.account_id = template.account_id
        and companion.prompt_fingerprint <> template.prompt_fingerprint
    inner join cross_org_use as peer_companion
        on peer_companion.window_start = companion.window_start
        and peer_companion.prompt_fingerprint = companion.prompt_fingerprint
        and peer_companion.org_key <> template.org_key
    inner join cross_org_use as peer_template
        on peer_template.window_start = template.window_start
        and peer_template.account_id = peer_companion.account_id
        and peer_template.prompt_fingerprint = template.prompt_fingerprint
    where template.requests >= $min_template_requests
),

script_templates as (
    -- a template links only as part of a script: at least $script_cohesion_share of its accounts use it
    -- cohesively. A popular tool's default prompt comes alone (its users' other prompts are their own),
    -- however rare it looks in a small population; a split ring's common template is cohesive through
    -- each cell's own templates.
    select window_start, prompt_fingerprint
    from cohesive_uses
    inner join template_sizes using (window_start, prompt_fingerprint)
    group by window_start, prompt_fingerprint
    having count(*) >= $script_cohesion_share * any_value(template_sizes.accounts)
),

resource_links as (
    select window_start, account_id, org_key, 'infrastructure' as family, 'ip:' || source_ip as resource
    from account_values
    where list_contains($anonymizer_asn_types, asn_type)
    union
    select window_start, account_id, org_key, 'infrastructure', 'asn:' || asn_key
    from account_values
    where list_contains($hosting_asn_types, asn_type) and asn_key is not null
    union
    select window_start, account_id, org_key, 'payment', payment_fingerprint
    from account_values
    where payment_fingerprint is not null
    union
    select window_start, account_id, org_key, 'client', user_agent
    from account_values
    where user_agent is not null
    union
    -- a template needs repeated use by an account to link it (one stray request is noise), and must be
    -- part of a script
    select window_start, account_id, org_key, 'template', prompt_fingerprint
    from template_use
    semi join script_templates using (window_start, prompt_fingerprint)
    where requests >= $min_template_requests
),

sync_links as (
    select
        members.window_start,
        members.account_id,
        orgs.org_key,
        'timing' as family,
        members.group_key as resource
    from synchronized_accounts(
        $window_hours, $sync_max_active_share, $sync_min_active_minutes, $sync_min_jaccard, $sync_min_accounts
    ) as members
    -- every account in account_minute has events, so the left join always finds its org
    left join (
        select account_id, any_value(org_key) as org_key from account_values group by account_id
    ) as orgs using (account_id)
),

all_links as (
    select * from resource_links
    union all
    select * from sync_links
),

shared_resources as (
    -- only values shared across organisations bind; rarity in 0..1 (1 = shared by two accounts of a
    -- huge population, 0 = shared by everybody)
    select
        all_links.window_start,
        all_links.family,
        all_links.resource,
        count(distinct all_links.account_id) as sharing_accounts,
        greatest(
            ln(any_value(population.accounts) / count(distinct all_links.account_id))
                / ln(any_value(population.accounts)),
            0
        ) as rarity
    from all_links
    inner join population using (window_start)
    group by all_links.window_start, all_links.family, all_links.resource
    having count(distinct all_links.org_key) >= $min_resource_orgs
),

family_points as (
    select * from (values
        ('infrastructure', $infrastructure_points),
        ('payment', $payment_points),
        ('template', $template_points),
        ('timing', $timing_points),
        ('client', $client_points)
    ) as points(family, points)
),

account_families as (
    -- per account and family: its rarest shared value, scaled so rarity >= $full_rarity scores fully
    select
        links.window_start,
        links.account_id,
        links.family,
        least(max(shared.rarity) / $full_rarity, 1) * any_value(family_points.points) as strength
    from all_links as links
    inner join shared_resources as shared using (window_start, family, resource)
    inner join family_points using (family)
    group by links.window_start, links.account_id, links.family
),

members as (
    select
        window_start,
        account_id,
        sum(strength) as member_strength,
        list_sort(list(family)) as families
    from account_families
    group by window_start, account_id
    having sum(strength) >= $min_member_strength
),

edges as (
    -- members join rings through shared values of the joining families
    select distinct links.window_start, links.account_id, links.family || ':' || links.resource as node
    from all_links as links
    semi join members using (window_start, account_id)
    semi join shared_resources using (window_start, family, resource)
    -- client fingerprints and whole ASes add strength but never join rings: one SDK version, or one
    -- hosting provider, is shared by unrelated campaigns and their bystanders alike
    where links.family <> 'client'
        and not (links.family = 'infrastructure' and links.resource like 'asn:%')
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
    select
        components.window_start,
        components.label,
        count(*) as ring_size,
        list_sort(list(components.account_id)) as account_ids,
        median(members.member_strength) as median_member_strength
    from components
    inner join members using (window_start, account_id)
    group by components.window_start, components.label
    having count(*) >= $min_ring_accounts
),

ring_values as (
    -- how specific each shared value is to the ring: members sharing it / all accounts sharing it. A
    -- ring's IPs, cards and templates are used (almost) only by the ring; a cloud NAT gateway or a
    -- popular template that happens to cover some members is shared mostly with outsiders.
    select
        rings.window_start,
        rings.label,
        links.family,
        links.resource,
        count(distinct links.account_id) / any_value(shared.sharing_accounts) as concentration
    from rings
    inner join components using (window_start, label)
    inner join all_links as links using (window_start, account_id)
    inner join shared_resources as shared using (window_start, family, resource)
    group by rings.window_start, rings.label, links.family, links.resource
),

ring_families as (
    -- per family: the share of members it covers and its most ring-specific value
    select
        ring_values.window_start,
        ring_values.label,
        ring_values.family,
        max(ring_values.concentration) as concentration,
        any_value(family_points.points) as points
    from ring_values
    inner join family_points using (family)
    group by ring_values.window_start, ring_values.label, ring_values.family
),

ring_evidence as (
    -- a ring stands on the kinds of link that are specific to it (concentration >= $min_concentration)
    select
        window_start,
        label,
        sum(points) filter (where concentration >= $min_concentration) as specific_strength,
        map_from_entries(list({'k': family, 'v': round(concentration, 2)} order by family)) as family_concentration
    from ring_families
    group by window_start, label
),

ring_edges as (
    select
        rings.window_start,
        rings.label,
        count(distinct edges.node) as binding_resources,
        count(distinct edges.node) filter (where edges.node like 'infrastructure:ip:%') as shared_ips,
        count(distinct edges.node) filter (where edges.node like 'payment:%') as shared_payments,
        count(distinct edges.node) filter (where edges.node like 'template:%') as shared_templates,
        count(distinct edges.node) filter (where edges.node like 'timing:%') as synchronized_groups
    from rings
    inner join components using (window_start, label)
    inner join edges using (window_start, account_id)
    group by rings.window_start, rings.label
),

ring_volume as (
    select
        rings.window_start,
        rings.label,
        sum(account_values.requests) as requests,
        sum(account_values.output_tokens) as output_tokens,
        count(distinct account_values.org_key) as distinct_orgs,
        min(account_values.first_seen) as first_seen,
        max(account_values.last_seen) as last_seen
    from rings
    inner join components using (window_start, label)
    inner join account_values using (window_start, account_id)
    group by rings.window_start, rings.label
),

scored as (
    -- the typical member's link strength, no more than the ring-specific links carry, plus a little for
    -- size (a hydra of hundreds is no accident)
    select
        rings.*,
        ring_evidence.specific_strength,
        ring_evidence.family_concentration,
        least(
            least(rings.median_member_strength, ring_evidence.specific_strength)
                + $size_points * least(ln(rings.ring_size) / ln($large_ring_accounts), 1),
            100
        ) as risk_score
    from rings
    inner join ring_evidence using (window_start, label)
    where ring_evidence.specific_strength >= $min_member_strength
)

select
    'ring:' || scored.label as entity_id,
    scored.account_ids,
    scored.window_start,
    scored.window_start + to_hours($window_hours) as window_end,
    risk_severity(scored.risk_score) as severity,
    round(scored.risk_score) as risk_score,
    scored.ring_size,
    round(scored.median_member_strength, 1) as median_member_strength,
    scored.specific_strength,
    scored.family_concentration,
    ring_volume.requests,
    ring_volume.output_tokens,
    ring_volume.distinct_orgs,
    ring_edges.binding_resources,
    ring_edges.shared_ips,
    ring_edges.shared_payments,
    ring_edges.shared_templates,
    ring_edges.synchronized_groups,
    ring_volume.first_seen,
    ring_volume.last_seen
from scored
inner join ring_edges using (window_start, label)
inner join ring_volume using (window_start, label)
order by scored.window_start, scored.ring_size desc, entity_id
