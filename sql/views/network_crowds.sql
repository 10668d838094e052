-- network_crowds(network_events, anonymizer_asn_types, ordinary_network_weight, min_weighted_accounts,
--                hydra_weighted_accounts, min_distinct_orgs, weight_crowd, weight_anonymizer):
-- the crowd test and its score for the detections that count accounts of many organisations inside one
-- network per window (shared_asn_infrastructure: an AS; shared_subnet_infrastructure: a /24 or /48 block),
-- one definition with each rule's own parameters.
-- A macro can take neither the rule's $parameters nor its grouping column, so each rule passes its
-- thresholds as arguments and the name of a relation of its requests with the columns
--   shared_key (the network), window_start, account_id, org_key, asn_type
-- Result: one row per crowded network window: distinct_accounts, distinct_orgs, weighted_accounts,
-- account_ids, risk_factors {crowd, anonymizer_share} and risk_score (their sum). What else went through
-- a crowded network (requests, types, ...) is each rule's own step: in here, the statistics a rule does
-- not report were still computed (10-15% more CPU for both rules, measured on a 188k-event lake).
-- Windows that cannot be crowded are dropped first by a bound on their weighted accounts (busy_windows),
-- so a rule passes all its requests, not a prefiltered copy.
create or replace macro network_crowds(
    network_events,
    anonymizer_asn_types,
    ordinary_network_weight,
    min_weighted_accounts,
    hydra_weighted_accounts,
    min_distinct_orgs,
    weight_crowd,
    weight_anonymizer
) as table
with weighted_events as (
    select
        shared_key,
        window_start,
        account_id,
        org_key,
        network_weight(asn_type, anonymizer_asn_types, ordinary_network_weight) as weight
    from query_table(network_events)
),

busy_windows as (
    -- An account weighs the most of its requests' weights, so a window's weighted accounts never exceed
    -- the sum of its requests' weights (schemas/detection.schema.json keeps weights non-negative): one
    -- group-by per network window (cheap: two keys) rules out ~99 % of them before the per-account one
    -- (three keys, ~4x the groups).
    -- The 1e-9 absorbs float rounding in the order of summation; no real window sits that close.
    select shared_key, window_start
    from weighted_events
    group by shared_key, window_start
    having sum(weight) >= min_weighted_accounts - 1e-9
),

account_weights as (
    -- one row per account and busy network window, plain aggregates only (the distinct ones are the
    -- costly part and come after the crowd test has dropped most windows); an account counts fully if
    -- any of its requests in the network came through an anonymizer
    select
        shared_key,
        window_start,
        account_id,
        any_value(org_key) as org_key,
        max(weight) as weight
    from weighted_events
    semi join busy_windows using (shared_key, window_start)
    group by shared_key, window_start, account_id
),

crowds as (
    select
        shared_key,
        window_start,
        count(*) as distinct_accounts,
        count(distinct org_key) as distinct_orgs,
        sum(weight) as weighted_accounts,
        list_sort(list(account_id)) as account_ids
    from account_weights
    group by shared_key, window_start
    having sum(weight) >= min_weighted_accounts
        and count(distinct org_key) >= min_distinct_orgs
),

scored as (
    select
        *,
        {
            -- crowd size on a log scale between the alerting floor and a hydra-sized crowd
            'crowd': round(
                weight_crowd * log_scale(weighted_accounts, min_weighted_accounts, hydra_weighted_accounts), 1
            ),
            -- a network of anonymizers is likelier a proxy pool than one of residential or mobile lines
            'anonymizer_share': round(weight_anonymizer * weighted_accounts / distinct_accounts, 1)
        } as risk_factors
    from crowds
)

select *, risk_factors.crowd + risk_factors.anonymizer_share as risk_score
from scored;
