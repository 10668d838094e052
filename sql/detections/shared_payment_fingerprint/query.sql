-- shared_payment_fingerprint: one payment method (payment_fingerprint) paying for accounts of several
-- different organisations. A company paying for its employees' accounts is one org and yields nothing.
-- Unlike a shared IP or template, a card is a private instrument: strangers do not share one by chance,
-- so the finding stands on its own (base risk) and links the accounts it pays for. Spread over many
-- organisations and harvesting-shaped content raise it; a reseller paying for a few clients' ordinary
-- traffic stays at the base.

with payment_accounts as (
    select
        payment_fingerprint,
        time_bucket(to_hours($window_hours), event_time) as window_start,
        account_id,
        any_value(org_key) as org_key,
        count(*) as requests,
        count(*) filter (where list_contains(request_tags, 'reasoning_elicitation')) as reasoning_requests,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens
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
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(output_tokens) / greatest(sum(input_tokens), 1) as output_input_ratio,
        sum(reasoning_requests) / sum(requests) as reasoning_share,
        list_sort(list(account_id)) as account_ids
    from payment_accounts
    group by payment_fingerprint, window_start
    having count(distinct org_key) >= $min_distinct_orgs
),

scored as (
    -- every feature in 0..1; greatest(least(...)) clamps
    select
        *,
        {
            'card_across_orgs': $base_risk,
            'org_spread': round($weight_spread * greatest(least(
                ln(distinct_orgs / $min_distinct_orgs) / ln($wide_distinct_orgs / $min_distinct_orgs),
                1), 0), 1),
            -- output ratio on a log scale (as in extraction_profile) or reasoning elicitation
            'harvest_content': round($weight_content * greatest(
                least(greatest(
                    ln(greatest(output_input_ratio, 1e-9) / $ratio_normal) / ln($ratio_suspicious / $ratio_normal),
                    0), 1),
                least(reasoning_share / $reasoning_suspicious_share, 1)
            ), 1)
        } as risk_factors
    from payment_windows
),

totals as (
    select
        *,
        risk_factors.card_across_orgs + risk_factors.org_spread + risk_factors.harvest_content as risk_score
    from scored
)

select
    payment_fingerprint as entity_id,
    account_ids,
    window_start,
    window_end,
    risk_severity(risk_score) as severity,
    risk_score,
    risk_factors,
    distinct_accounts,
    distinct_orgs,
    requests,
    output_tokens,
    round(output_input_ratio, 2) as output_input_ratio,
    round(reasoning_share, 3) as reasoning_share
from totals
order by window_start, payment_fingerprint
