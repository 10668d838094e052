-- extraction_profile: an account whose traffic looks like harvesting model outputs: output-heavy volume
-- high in the population, flat around the clock, mostly reasoning-elicitation requests, few templates.
-- Judged against the population (volume percentile of the same window) and the account's own history
-- (severity high when the profile is new for the account). A legitimate batch customer is input-heavy
-- and fails the output-ratio test however large and flat its volume is.

with account_windows as (
    select
        account_id,
        time_bucket(to_hours($window_hours), event_time) as window_start,
        count(*) as requests,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        count(*) filter (where list_contains(request_tags, 'reasoning_elicitation')) as reasoning_requests,
        count(distinct prompt_fingerprint) as distinct_templates,
        count(distinct date_trunc('hour', event_time)) as active_hours,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from events_enriched
    group by account_id, window_start
),

lake_hours as (
    -- hours of the window the lake has data for: "24/7" on a 30-minute lake means "every hour seen"
    select
        time_bucket(to_hours($window_hours), event_time) as window_start,
        count(distinct date_trunc('hour', event_time)) as observed_hours
    from events_enriched
    group by window_start
),

population as (
    select
        window_start,
        quantile_cont(output_tokens, $volume_percentile) as output_tokens_threshold
    from account_windows
    group by window_start
),

profiled as (
    select
        windows.*,
        windows.output_tokens / greatest(windows.input_tokens, 1) as output_input_ratio,
        windows.reasoning_requests / windows.requests as reasoning_share,
        windows.active_hours / lake_hours.observed_hours as active_hour_share,
        population.output_tokens_threshold
    from account_windows as windows
    inner join lake_hours using (window_start)
    inner join population using (window_start)
),

history as (
    -- the account's own earlier windows: was it already this output-heavy?
    select
        current_window.account_id,
        current_window.window_start,
        avg(earlier.output_tokens) as historical_output_tokens,
        count(earlier.window_start) as historical_windows
    from profiled as current_window
    left join account_windows as earlier
        on earlier.account_id = current_window.account_id
        and earlier.window_start < current_window.window_start
        and earlier.window_start >= current_window.window_start - to_days($history_days)
    group by current_window.account_id, current_window.window_start
)

select
    profiled.account_id as entity_id,
    [profiled.account_id] as account_ids,
    profiled.window_start,
    profiled.window_start + to_hours($window_hours) as window_end,
    -- medium when the account has always looked like this (a known heavy user to review), high when
    -- the profile is new or jumped well above the account's own history
    case
        when history.historical_windows > 0
            and profiled.output_tokens < $history_jump * history.historical_output_tokens
            then 'medium'
    end as severity,
    profiled.requests,
    profiled.input_tokens,
    profiled.output_tokens,
    round(profiled.output_input_ratio, 2) as output_input_ratio,
    round(profiled.reasoning_share, 3) as reasoning_share,
    profiled.distinct_templates,
    round(profiled.active_hour_share, 3) as active_hour_share,
    round(profiled.output_tokens_threshold) as population_output_threshold,
    history.historical_windows,
    round(history.historical_output_tokens) as historical_output_tokens,
    profiled.first_seen,
    profiled.last_seen
from profiled
inner join history using (account_id, window_start)
where profiled.output_tokens >= profiled.output_tokens_threshold
    and profiled.output_tokens >= $min_output_tokens
    and profiled.output_input_ratio >= $min_output_input_ratio
    and profiled.reasoning_share >= $min_reasoning_share
    and profiled.distinct_templates <= $max_templates
    and profiled.active_hour_share >= $min_active_hour_share
order by profiled.window_start, profiled.account_id
