-- Events that reached the job after their one-minute window had closed: they are in the archive (and so
-- in every figure of this report) but not in the *_minute aggregates, which is what readers must know.
select
    count(*) as events,
    count(distinct account_id) as accounts,
    max(epoch_ms(watermark_at_arrival) - epoch_ms(event_time)) / 1000.0 as max_behind_watermark_s
from late_events
where event_time >= $start and event_time < $end
