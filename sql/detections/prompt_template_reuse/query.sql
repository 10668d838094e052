-- prompt_template_reuse: one prompt template (prompt_fingerprint) used by accounts of many different
-- organisations within a window, scored by evidence rather than the crowd: popular tools put their
-- default prompt in front of thousands of unrelated users, so a shared template alone is nothing.
-- What marks a harvesting script is
--   - cohesion: the same strangers share a *set* of templates (a script cycles through several); a
--     public tool's users share its one template and nothing else;
--   - harvesting-shaped content: the template's requests are output-heavy or elicit reasoning;
--   - spread across organisations (on a log scale; the crowd counts least).
-- A team sharing a template is one org and yields nothing; scores below $min_risk yield no signal, so
-- only scripts link accounts into a campaign (a popular template never does).

with template_events as (
    -- the template's requests, as the shared_value macros read them (sql/views/shared_values.sql)
    select
        prompt_fingerprint as shared_key,
        account_id, org_key, request_tags, input_tokens, output_tokens, event_time
    from events_enriched
    where prompt_fingerprint is not null
),

every_template_account as (
    -- every account using a template in a window, with its requests through it (a minimum of one request
    -- keeps them all): the accounts that count (value_accounts) and the companions (account_templates)
    -- both come from this one grouping of the template requests, not a second one
    select * from shared_value_accounts(template_events, $window_hours, 1)
),

value_accounts as (
    select * from every_template_account where requests >= $min_requests_per_account
),

template_accounts as (
    select * rename (shared_key as prompt_fingerprint) from value_accounts
),

account_templates as (
    -- every template an account used at all: a companion counts with a single request (a script's rarer
    -- template may come up once or twice in a short window)
    select shared_key as prompt_fingerprint, window_start, account_id
    from every_template_account
),

template_windows as (
    select * rename (shared_key as prompt_fingerprint)
    from shared_value_windows(value_accounts, $window_hours, $min_distinct_orgs)
),

companions as (
    -- another cross-organisation template used by at least $min_companion_share of this template's
    -- accounts: the two are parts of one script
    select
        template.prompt_fingerprint,
        template.window_start,
        other.prompt_fingerprint as companion_fingerprint
    from template_windows as template
    inner join template_accounts as member using (prompt_fingerprint, window_start)
    inner join account_templates as other
        on other.account_id = member.account_id
        and other.window_start = member.window_start
        and other.prompt_fingerprint <> member.prompt_fingerprint
    semi join template_windows as shared
        on shared.prompt_fingerprint = other.prompt_fingerprint
        and shared.window_start = other.window_start
    group by template.prompt_fingerprint, template.window_start, other.prompt_fingerprint
    having count(*) >= $min_companion_share * any_value(template.distinct_accounts)
),

cohesion as (
    -- share of the template's accounts that also run one of its companions
    select
        member.prompt_fingerprint,
        member.window_start,
        count(distinct member.account_id) as cohesive_accounts,
        count(distinct companions.companion_fingerprint) as companion_templates
    from template_accounts as member
    inner join account_templates as other
        on other.account_id = member.account_id
        and other.window_start = member.window_start
    inner join companions
        on companions.prompt_fingerprint = member.prompt_fingerprint
        and companions.window_start = member.window_start
        and companions.companion_fingerprint = other.prompt_fingerprint
    group by member.prompt_fingerprint, member.window_start
),

features as (
    -- every feature in 0..1 (the scales of sql/views/risk_scales.sql clamp)
    select
        template_windows.*,
        coalesce(cohesion.cohesive_accounts, 0) as cohesive_accounts,
        coalesce(cohesion.companion_templates, 0) as companion_templates,
        -- members new to the script may not have reached its other templates yet
        least(coalesce(cohesion.cohesive_accounts, 0) / template_windows.distinct_accounts / $full_cohesion_share, 1)
            as cohesion_f,
        harvest_content(
            template_windows.output_input_ratio, template_windows.reasoning_share,
            $ratio_normal, $ratio_suspicious, $reasoning_suspicious_share
        ) as content_f,
        log_scale(template_windows.distinct_orgs, $min_distinct_orgs, $wide_distinct_orgs) as spread_f
    from template_windows
    left join cohesion using (prompt_fingerprint, window_start)
),

scored as (
    select
        *,
        {
            'script_cohesion': round($weight_cohesion * cohesion_f, 1),
            'harvest_content': round($weight_content * content_f, 1),
            'org_spread': round($weight_spread * spread_f, 1)
        } as risk_factors
    from features
),

totals as (
    select
        *,
        risk_factors.script_cohesion + risk_factors.harvest_content + risk_factors.org_spread as risk_score
    from scored
)

select
    prompt_fingerprint as entity_id,
    account_ids,
    window_start,
    window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    risk_factors,
    distinct_accounts,
    distinct_orgs,
    cohesive_accounts,
    companion_templates,
    requests,
    round(reasoning_share, 3) as reasoning_share,
    round(output_input_ratio, 2) as output_input_ratio,
    first_seen,
    last_seen
from totals
-- a popular public template (no cohesion, ordinary content) yields no signal at all
where risk_score >= $min_risk
order by window_start, prompt_fingerprint
