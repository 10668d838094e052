-- Requests per time slot and region; the slot width ($slot_minutes) is chosen by the report from the
-- traffic's own span, so thirty minutes of traffic draws thirty bars instead of one hourly bar.
select
    time_bucket(to_minutes($slot_minutes), event_time) as slot_start,
    case when restricted then 'restricted regions' else 'other regions' end as region,
    count(*) as requests
from period_events
group by all
order by slot_start, region
