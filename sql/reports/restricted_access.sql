select
    account_id,
    list_sort(list(distinct country)) as countries,
    list_sort(list(distinct regime)) as regimes,
    count(*) as attempted,
    count(*) filter (where served) as served,
    count(*) filter (where not served) as refused,
    coalesce(sum(output_tokens) filter (where served), 0) as output_tokens_served,
    min(event_time) as first_seen,
    max(event_time) as last_seen
from period_events
where restricted
group by account_id
order by attempted desc, account_id
