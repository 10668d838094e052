-- A temp view shared by the lake queries: the period's events, each flagged with the restricted-list
-- row in force at its own event time (the list is dated; rows of one country never overlap in time).
-- DuckDB cannot bind parameters in a view definition, so the bounds are formatted in as literals; they
-- come from Period (datetimes), never from user text.
create or replace temp view period_events as
with events_in_period as (
    select *
    from events
    where event_time >= timestamp '{start}' and event_time < timestamp '{end}'
        -- dt prunes whole hive partitions before any file is opened
        and dt between '{first_day}' and '{last_day}'
)

select
    events_in_period.*,
    restricted.country_code is not null as restricted,
    restricted.regime,
    -- "served" means the API answered the request; 4xx/5xx were refused or failed
    events_in_period.status_code between 200 and 399 as served
from events_in_period
left join restricted_countries as restricted
    on events_in_period.country = restricted.country_code
    and in_force(events_in_period.event_time, restricted.effective_from, restricted.effective_to)
