-- Table macros for the detections that follow one private value across organisations (a prompt template
-- in prompt_template_reuse, a card in shared_payment_fingerprint): the same two steps with a different
-- key, one definition each. A macro cannot take the rule's $parameters nor its grouping column, so each
-- rule first projects its events as `value_events` and passes that relation's name and its thresholds:
--   shared_key           the value followed (template, card)
--   window_start         the rule's window
--   account_id, org_key  who used it (org_key: an account without an org is an org of its own)
--   reasoning_requested, input_tokens, output_tokens, event_time   per request

-- shared_value_accounts(value_events, min_requests_per_account): one row per account using the value in
-- the window, with its traffic through the value; an account with fewer requests does not count.
create or replace macro shared_value_accounts(value_events, min_requests_per_account) as table
select
    shared_key,
    window_start,
    account_id,
    any_value(org_key) as org_key,
    count(*) as requests,
    count(*) filter (where reasoning_requested) as reasoning_requests,
    sum(input_tokens) as input_tokens,
    sum(output_tokens) as output_tokens,
    min(event_time) as first_seen,
    max(event_time) as last_seen
from query_table(value_events)
group by shared_key, window_start, account_id
having count(*) >= min_requests_per_account;

-- shared_value_windows(value_accounts, min_distinct_orgs): one row per value and window used by accounts
-- of at least min_distinct_orgs organisations (value_accounts: shared_value_accounts' rows), with what
-- its accounts did through it.
create or replace macro shared_value_windows(value_accounts, min_distinct_orgs) as table
select
    shared_key,
    window_start,
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
