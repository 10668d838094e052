select
    count(*) as requests,
    count(*) filter (where served) as served,
    count(distinct account_id) as accounts,
    count(distinct country) as countries,
    coalesce(sum(output_tokens), 0) as output_tokens,
    count(*) filter (where country is null) as unknown_geo_requests,
    -- the traffic's own span inside the period: it sizes the time chart's slots
    min(event_time) as first_event,
    max(event_time) as last_event
from period_events
