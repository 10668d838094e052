-- late_events: valid events that arrived after their one-minute window had closed (watermark passed).
-- They are in `events` like every event, but not in the *_minute aggregates: count them here, and
-- recompute an affected window from `events` when an exact figure is needed.
create or replace view late_events as
select * from {{ lake late_events }}
