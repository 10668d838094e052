-- Dead letters in the lake come from replays (a streaming job sends its own to the dead-letter topic);
-- they are partitioned by when they failed, so the period selects on failed_at. The reason prefix is the
-- parser's (ParseAccessEvent.eventTimeOutOfBounds).
select
    count(*) as records,
    count(*) filter (where starts_with(reason, 'event_time out of bounds')) as event_time_out_of_bounds
from dead_letters
where failed_at >= $start and failed_at < $end
