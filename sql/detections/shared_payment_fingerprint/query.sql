-- shared_payment_fingerprint: one payment method (payment_fingerprint) paying for accounts of several
-- different organisations. A company paying for its employees' accounts is one org and yields nothing.
-- Unlike a shared IP or template, a card is a private instrument: strangers do not share one by chance,
-- so the finding stands on its own (base risk) and links the accounts it pays for. Spread over many
-- organisations and harvesting-shaped content raise it; a reseller paying for a few clients' ordinary
-- traffic stays at the base.

with payment_events as (
    -- the card's requests, as the shared_value macros read them (sql/views/shared_values.sql)
    select
        payment_fingerprint as shared_key,
        account_id, org_key, request_tags, input_tokens, output_tokens, event_time
    from events_enriched
    where payment_fingerprint is not null
),

payment_accounts as (
    select * from shared_value_accounts(payment_events, $window_hours, $min_requests_per_account)
),

payment_windows as (
    select * from shared_value_windows(payment_accounts, $window_hours, $min_distinct_orgs)
),

scored as (
    select
        *,
        {
            'card_across_orgs': $base_risk,
            'org_spread': round(
                $weight_spread * log_scale(distinct_orgs, $min_distinct_orgs, $wide_distinct_orgs), 1
            ),
            'harvest_content': round($weight_content * harvest_content(
                output_input_ratio, reasoning_share,
                $ratio_normal, $ratio_suspicious, $reasoning_suspicious_share
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
    shared_key as entity_id,
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
order by window_start, shared_key
