-- rate_limit_evasion: many accounts each running just under the per-account rate limit in the same
-- window, or collecting 429s spread thin across them: load balanced across accounts so that no single
-- one trips the limit. One row per window listing the accounts; a single heavy customer is not a ring.
-- An account counts only when it presses the limit for a sustained stretch: a person running a script
-- by hand bursts over the limit for a minute or three and collects 429s, a ring member rides just under
-- it for most of an hour ($min_riding_minutes under the limit, or $min_pressing_minutes at or over the
-- near-limit mark with 429s). Scored by evidence (risk_factors): a group of
-- organisations riding the limit together is strong on its own and links its members into one campaign;
-- more members and longer riding raise it.

with pressing_windows as (
    -- Riding the limit and being throttled both take minutes at or over the near-limit mark (at least
    -- $min_riding_minutes or $min_pressing_minutes of them), so only account windows with such a minute
    -- are aggregated below: most accounts never come near the limit. Were either minimum below one,
    -- every window would be kept.
    select distinct account_id, time_bucket(to_minutes($window_minutes), window_start) as window_start
    from account_minute
    where requests >= $near_limit_share * $per_account_limit_per_minute
        or least($min_riding_minutes, $min_pressing_minutes) < 1
),

account_windows as (
    select
        account_id,
        time_bucket(to_minutes($window_minutes), window_start) as window_start,
        count(*) filter (where requests > 0) as active_minutes,
        count(*) filter (
            where requests >= $near_limit_share * $per_account_limit_per_minute
                and requests <= $per_account_limit_per_minute
        ) as near_limit_minutes,
        -- minutes at or over the near-limit mark, throttled ones included (requests count 429s too)
        count(*) filter (where requests >= $near_limit_share * $per_account_limit_per_minute) as pressing_minutes,
        max(requests) as max_requests_per_minute,
        sum(requests) as requests
    from account_minute
    semi join pressing_windows
        on pressing_windows.account_id = account_minute.account_id
        and pressing_windows.window_start = time_bucket(to_minutes($window_minutes), account_minute.window_start)
    group by account_id, time_bucket(to_minutes($window_minutes), window_start)
),

throttling as (
    select
        account_id,
        time_bucket(to_minutes($window_minutes), event_time) as window_start,
        count(*) filter (where status_code = 429) as throttled_requests,
        any_value(org_key) as org_key
    from events_enriched
    semi join pressing_windows
        on pressing_windows.account_id = events_enriched.account_id
        and pressing_windows.window_start = time_bucket(to_minutes($window_minutes), events_enriched.event_time)
    group by account_id, time_bucket(to_minutes($window_minutes), event_time)
),

evading_accounts as (
    select
        account_windows.*,
        throttling.throttled_requests,
        throttling.org_key,
        account_windows.near_limit_minutes >= $min_near_limit_share * account_windows.active_minutes
            and account_windows.near_limit_minutes >= $min_riding_minutes
            and account_windows.max_requests_per_minute <= $per_account_limit_per_minute as rides_the_limit,
        -- 429s count only on an account that pushes the limit itself for a sustained stretch: a light
        -- user throttled now and then, or a burst of a few minutes, is ordinary noise, not load spread
        -- across a ring.
        throttling.throttled_requests >= $min_throttled_requests
            and throttling.throttled_requests >= $min_throttled_share * account_windows.requests
            and account_windows.pressing_minutes >= $min_pressing_minutes
            as throttled
    from account_windows
    inner join throttling using (account_id, window_start)
    where account_windows.active_minutes >= $min_active_minutes
),

windows as (
    select
        window_start,
        count(*) as evading_accounts,
        count(distinct org_key) as distinct_orgs,
        list_sort(list(account_id)) as account_ids,
        sum(requests) as requests,
        sum(throttled_requests) as throttled_requests,
        count(*) filter (where rides_the_limit) as accounts_riding_the_limit,
        count(*) filter (where throttled) as accounts_throttled,
        round(avg(near_limit_minutes / active_minutes), 3) as mean_near_limit_share,
        avg(pressing_minutes) as mean_pressing_minutes
    from evading_accounts
    where rides_the_limit or throttled
    group by window_start
),

scored as (
    select
        *,
        {
            'riding_together': $base_risk,
            'group_size': round($weight_size * log_scale(evading_accounts, $min_accounts, $large_group_accounts), 1),
            'sustained': round($weight_sustained * least(mean_pressing_minutes / $window_minutes, 1), 1)
        } as risk_factors
    from windows
    where evading_accounts >= $min_accounts
        and distinct_orgs >= $min_distinct_orgs
),

totals as (
    select
        *,
        risk_factors.riding_together + risk_factors.group_size + risk_factors.sustained as risk_score
    from scored
)

select
    'rate-limit-evasion:' || strftime(window_start, '%Y-%m-%dT%H:%M') as entity_id,
    account_ids,
    window_start,
    window_start + to_minutes($window_minutes) as window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    risk_factors,
    evading_accounts,
    distinct_orgs,
    requests,
    throttled_requests,
    accounts_riding_the_limit,
    accounts_throttled,
    mean_near_limit_share,
    round(mean_pressing_minutes, 1) as mean_pressing_minutes,
    $per_account_limit_per_minute as per_account_limit_per_minute
from totals
order by window_start
