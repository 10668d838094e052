-- Table macros for the detections that follow one private value across organisations (a prompt template
-- in prompt_template_reuse, a card in shared_payment_fingerprint): the same two steps with a different
-- key, one definition each. A macro can take neither the rule's $parameters nor its grouping column, so
-- each rule passes its thresholds as arguments and the name of a relation of its value's requests with
-- the columns shared_key (the value), account_id, org_key (an account without an org is an org of its
-- own), request_tags, input_tokens, output_tokens, event_time.

-- shared_value_accounts(value_events, window_hours, min_requests_per_account): one row per account using
-- the value in a window, with its traffic through the value; an account with fewer requests does not count.
create or replace macro shared_value_accounts(value_events, window_hours, min_requests_per_account) as table
select
    shared_key,
    time_bucket(to_hours(window_hours), event_time) as window_start,
    account_id,
    any_value(org_key) as org_key,
    count(*) as requests,
    count(*) filter (where list_contains(request_tags, 'reasoning_elicitation')) as reasoning_requests,
    sum(input_tokens) as input_tokens,
    sum(output_tokens) as output_tokens,
    min(event_time) as first_seen,
    max(event_time) as last_seen
from query_table(value_events)
group by shared_key, window_start, account_id
having count(*) >= min_requests_per_account;

-- shared_value_windows(value_accounts, window_hours, min_distinct_orgs): one row per value and window
-- used by accounts of at least min_distinct_orgs organisations (value_accounts: shared_value_accounts'
-- rows), with what its accounts did through it.
create or replace macro shared_value_windows(value_accounts, window_hours, min_distinct_orgs) as table
select
    shared_key,
    window_start,
    window_start + to_hours(window_hours) as window_end,
    count(*) as distinct_accounts,
    count(distinct org_key) as distinct_orgs,
    sum(requests) as requests,
    sum(output_tokens) as output_tokens,
    sum(output_tokens) / greatest(sum(input_tokens), 1) as output_input_ratio,
    sum(reasoning_requests) / sum(requests) as reasoning_share,
    list_sort(list(account_id)) as account_ids,
    min(first_seen) as first_seen,
    max(last_seen) as last_seen
from query_table(value_accounts)
group by shared_key, window_start
having count(distinct org_key) >= min_distinct_orgs;
