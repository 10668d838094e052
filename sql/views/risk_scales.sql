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
