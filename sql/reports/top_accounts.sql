select
    account_id,
    count(*) as requests,
    coalesce(sum(input_tokens), 0) as input_tokens,
    coalesce(sum(output_tokens), 0) as output_tokens,
    count(distinct country) as countries,
    count(distinct source_ip) as source_ips
from period_events
group by account_id
order by output_tokens desc, account_id
limit $top
