-- Scales the detections' risk factors share, one definition each (DuckDB macros; every argument is a
-- detection's own column or rule.yml parameter, so thresholds stay in the YAML).

-- log_scale(value, zero_at, one_at): where value sits between zero_at (0) and one_at (1) on a log scale,
-- clamped to 0..1: crowd sizes grow by orders of magnitude, so doubling a crowd adds the same at any size.
create or replace macro log_scale(value, zero_at, one_at) as
    greatest(least(ln(value / zero_at) / ln(one_at / zero_at), 1), 0);

-- network_weight(asn_type, anonymizer_asn_types, ordinary_weight): how much one request makes its account
-- count in a crowd on that network: fully through an anonymizer (hosting, VPN, Tor), where proxy clusters
-- live; ordinary_weight on an ordinary network, where crowds of unrelated customers are normal.
create or replace macro network_weight(asn_type, anonymizer_asn_types, ordinary_weight) as
    case when list_contains(anonymizer_asn_types, asn_type) then 1.0 else ordinary_weight end;

-- output_ratio_scale(output_input_ratio, ratio_normal, ratio_suspicious): how output-heavy requests are,
-- 0..1, the ratio on a log scale (2x is as far from 1x as 8x from 4x); a ratio of 0 (no output at all)
-- scores 0 instead of taking ln(0).
create or replace macro output_ratio_scale(output_input_ratio, ratio_normal, ratio_suspicious) as
    log_scale(greatest(output_input_ratio, 1e-9), ratio_normal, ratio_suspicious);

-- harvest_content(output_input_ratio, reasoning_share, ratio_normal, ratio_suspicious,
-- reasoning_suspicious_share): how much a group's requests look like harvesting a model's outputs, 0..1:
-- output-heavy or eliciting reasoning (its share scaled linearly), whichever is stronger.
create or replace macro harvest_content(
    output_input_ratio, reasoning_share, ratio_normal, ratio_suspicious, reasoning_suspicious_share
) as
    greatest(
        output_ratio_scale(output_input_ratio, ratio_normal, ratio_suspicious),
        least(reasoning_share / reasoning_suspicious_share, 1)
    );
