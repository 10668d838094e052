-- shared_payment_fingerprint: one payment method (payment_fingerprint) paying for accounts of several
-- different organisations. A company paying for its employees' accounts is one org and stays quiet.

with payment_accounts as (
    select
        payment_fingerprint,
        time_bucket(to_hours($window_hours), event_time) as window_start,
        account_id,
        any_value(coalesce(org_id, 'no-org:' || account_id)) as org_key,
        count(*) as requests,
        sum(output_tokens) as output_tokens,
        count(distinct source_ip) as distinct_ips
    from events_enriched
    where payment_fingerprint is not null
    group by payment_fingerprint, window_start, account_id
),

payment_windows as (
    select
        payment_fingerprint,
        window_start,
        window_start + to_hours($window_hours) as window_end,
        count(*) as distinct_accounts,
        count(distinct org_key) as distinct_orgs,
        sum(requests) as requests,
        sum(output_tokens) as output_tokens,
        list_sort(list(account_id)) as account_ids
    from payment_accounts
    group by payment_fingerprint, window_start
)

select
    payment_fingerprint as entity_id,
    account_ids,
    window_start,
    window_end,
    case when distinct_orgs >= $critical_distinct_orgs then 'critical' end as severity,
    distinct_accounts,
    distinct_orgs,
    requests,
    output_tokens
from payment_windows
where distinct_orgs >= $min_distinct_orgs
order by window_start, payment_fingerprint
