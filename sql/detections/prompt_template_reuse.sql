-- prompt_template_reuse: one prompt template (prompt_fingerprint) used by accounts of many different
-- organisations within a window. A team sharing a template is one org and stays quiet; a ring's scripted
-- harvesting prompts spread across throw-away accounts of "unrelated" orgs.

with template_accounts as (
    select
        prompt_fingerprint,
        time_bucket(to_hours($window_hours), event_time) as window_start,
        account_id,
        any_value(coalesce(org_id, 'no-org:' || account_id)) as org_key,
        count(*) as requests,
        count(*) filter (where list_contains(request_tags, 'reasoning_elicitation')) as reasoning_requests,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from events_enriched
    where prompt_fingerprint is not null
    group by prompt_fingerprint, window_start, account_id
    having count(*) >= $min_requests_per_account
),

template_windows as (
    select
        prompt_fingerprint,
        window_start,
        window_start + to_hours($window_hours) as window_end,
        count(*) as distinct_accounts,
        count(distinct org_key) as distinct_orgs,
        sum(requests) as requests,
        round(sum(reasoning_requests) / sum(requests), 3) as reasoning_share,
        list_sort(list(account_id)) as account_ids,
        min(first_seen) as first_seen,
        max(last_seen) as last_seen
    from template_accounts
    group by prompt_fingerprint, window_start
)

select
    prompt_fingerprint as entity_id,
    account_ids,
    window_start,
    window_end,
    -- a shared template that asks for the model's reasoning is the harvesting signature
    case when reasoning_share >= $high_reasoning_share then 'high' end as severity,
    distinct_accounts,
    distinct_orgs,
    requests,
    reasoning_share,
    first_seen,
    last_seen
from template_windows
where distinct_orgs >= $min_distinct_orgs
order by window_start, prompt_fingerprint
