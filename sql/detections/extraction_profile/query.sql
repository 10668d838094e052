-- extraction_profile: how much an account's window of traffic looks like harvesting model outputs, as a
-- weighted sum of evidence rather than an AND of cut-offs (an AND misses the harvester that is a little
-- off on one feature). Each feature is scaled to 0..1 between a "normal" and a "fully suspicious" value
-- from the YAML, and every contribution is shown in risk_factors; risk_score is their sum.
-- Two features are about the content being harvested: output-heavy traffic (output/input ratio) and
-- reasoning elicitation. The others - volume against the population, flat 24/7 activity, hosting
-- networks, template repetition, a jump against the account's own history - describe how a heavy
-- automated customer works too, so they count only in proportion to the content evidence (the gate):
-- a legitimate batch customer (normal ratio, no reasoning elicitation) stays low however big, flat and
-- cloud-hosted it is, and reasoning elicitation from a diurnal human team counts half.

with account_windows as (
    select
        account_id,
        time_bucket(to_hours($window_hours), event_time) as window_start,
        count(*) as requests,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        count(*) filter (where list_contains(request_tags, 'reasoning_elicitation')) as reasoning_requests,
        count(*) filter (where list_contains($hosting_asn_types, asn_type)) as hosting_requests,
        count(prompt_fingerprint) as fingerprinted_requests,
        count(distinct prompt_fingerprint) as distinct_templates,
        count(distinct date_trunc('hour', event_time)) as active_hours,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from events_enriched
    group by account_id, window_start
),

lake_hours as (
    -- hours of the window the lake has data for: "24/7" on a 6-hour lake means "every hour seen"
    select
        time_bucket(to_hours($window_hours), event_time) as window_start,
        count(distinct date_trunc('hour', event_time)) as observed_hours
    from events_enriched
    group by window_start
),

history as (
    -- the account's own earlier windows: a sudden jump is new behaviour, a steady heavy user is not
    select
        current_window.account_id,
        current_window.window_start,
        avg(earlier.output_tokens) as historical_output_tokens,
        count(earlier.window_start) as historical_windows
    from account_windows as current_window
    left join account_windows as earlier
        on earlier.account_id = current_window.account_id
        and earlier.window_start < current_window.window_start
        and earlier.window_start >= current_window.window_start - to_days($history_days)
    group by current_window.account_id, current_window.window_start
),

features as (
    -- every feature in 0..1; greatest(least(...)) clamps
    select
        windows.*,
        lake_hours.observed_hours,
        history.historical_windows,
        history.historical_output_tokens,
        windows.output_tokens / greatest(windows.input_tokens, 1) as output_input_ratio,
        windows.reasoning_requests / windows.requests as reasoning_share,
        windows.active_hours / lake_hours.observed_hours as active_hour_share,
        windows.hosting_requests / windows.requests as hosting_share,
        output_ratio_scale(
            windows.output_tokens / greatest(windows.input_tokens, 1), $ratio_normal, $ratio_suspicious
        ) as ratio_f,
        least(windows.reasoning_requests / windows.requests / $reasoning_suspicious_share, 1) as reasoning_f,
        -- population rank of output volume within the same window
        greatest(least(
            (percent_rank() over population - $volume_normal_rank) / ($volume_suspicious_rank - $volume_normal_rank),
            1), 0) as volume_f,
        -- flatness needs enough observed hours to mean anything
        case
            when lake_hours.observed_hours >= $min_observed_hours then greatest(least(
                (windows.active_hours / lake_hours.observed_hours - $flat_normal_share)
                    / (1 - $flat_normal_share),
                1), 0)
            else 0
        end as flat_f,
        windows.hosting_requests / windows.requests as hosting_f,
        -- prompt breadth: harvesting a model's capabilities needs many different prompt templates, while
        -- a batch job (however heavy) runs one task; repetition inside one account says nothing, since
        -- both repeat (shared templates across accounts are prompt_template_reuse's evidence)
        case
            when windows.fingerprinted_requests >= $min_template_requests then greatest(least(
                (windows.distinct_templates - $breadth_normal_templates)
                    / ($breadth_suspicious_templates - $breadth_normal_templates),
                1), 0)
            else 0
        end as breadth_f,
        case
            when history.historical_windows > 0
                and windows.output_tokens >= $history_jump * history.historical_output_tokens
                then 1.0
            else 0
        end as jump_f
    from account_windows as windows
    inner join lake_hours using (window_start)
    inner join history using (account_id, window_start)
    window population as (partition by windows.window_start order by windows.output_tokens)
),

contributions as (
    select
        *,
        -- automation: running around the clock or from servers; elicited reasoning counts fully only then
        greatest(flat_f, hosting_f) as automation_f,
        -- how far the content itself looks harvested: the gate for the operational features
        greatest(ratio_f, reasoning_f * greatest(flat_f, hosting_f)) as gate
    from features
),

scored as (
    select
        *,
        {
            'output_input_ratio': round($weight_ratio * ratio_f, 1),
            'reasoning_elicitation': round($weight_reasoning * reasoning_f * (0.5 + 0.5 * automation_f), 1),
            'output_volume': round($weight_volume * volume_f * gate, 1),
            'flat_24_7': round($weight_flatness * flat_f * gate, 1),
            'hosting_networks': round($weight_hosting * hosting_f * gate, 1),
            -- breadth counts for traffic from servers: a research team trying many templates from its
            -- offices is not harvesting (flatness cannot tell them apart in a short window)
            'prompt_breadth': round($weight_breadth * breadth_f * hosting_f * gate, 1),
            'history_jump': round($weight_history * jump_f * gate, 1)
        } as risk_factors
    from contributions
    where output_tokens >= $min_output_tokens
),

totals as (
    select
        *,
        least(
            risk_factors.output_input_ratio + risk_factors.reasoning_elicitation + risk_factors.output_volume
            + risk_factors.flat_24_7 + risk_factors.hosting_networks + risk_factors.prompt_breadth
            + risk_factors.history_jump,
            100
        ) as risk_score
    from scored
)

select
    account_id as entity_id,
    [account_id] as account_ids,
    window_start,
    window_start + to_hours($window_hours) as window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    risk_factors,
    requests,
    input_tokens,
    output_tokens,
    round(output_input_ratio, 2) as output_input_ratio,
    round(reasoning_share, 3) as reasoning_share,
    distinct_templates,
    round(active_hour_share, 3) as active_hour_share,
    observed_hours,
    round(hosting_share, 3) as hosting_share,
    historical_windows,
    round(historical_output_tokens) as historical_output_tokens,
    first_seen,
    last_seen
from totals
-- ordinary accounts (below $min_risk) yield no signal at all
where risk_score >= $min_risk
order by window_start, account_id
