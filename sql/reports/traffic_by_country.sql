select
    coalesce(country, 'unknown') as country,
    bool_or(restricted) as restricted,
    count(*) as requests,
    count(*) filter (where served) as served,
    count(distinct account_id) as accounts,
    coalesce(sum(output_tokens), 0) as output_tokens
from period_events
group by all
order by requests desc, country
