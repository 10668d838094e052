-- Batch for the aggregates_reconciliation suite: per emitted 1-minute window of one hour, the
-- requests counted by the account and country aggregates next to the raw events of that minute that
-- the job aggregated (the archive holds late events too; the job counts those in late_events instead).
-- Runs once per account_minute partition; the other tables' partitions of the same hour are read
-- alongside (all of them are partitioned by event time / window start).

with emitted_windows as (
    -- Only windows the job has emitted: a window still open has raw events but no aggregate yet,
    -- which is lag, not a defect, so the comparison starts from the aggregates.
    select window_start, sum(requests) as account_requests
    from {{ partition account_minute }}
    group by window_start
),

country_windows as (
    select window_start, sum(requests) as country_requests
    from {{ partition country_minute }}
    group by window_start
),

archived_minutes as (
    -- The same 1-minute tumbling buckets as the Flink job's windows (aligned to the epoch).
    select time_bucket(interval 1 minute, event_time) as window_start, count(*) as archived_requests
    from {{ partition events }}
    group by window_start
),

late_minutes as (
    -- Events that reached the job after their window had closed: archived, never aggregated.
    select time_bucket(interval 1 minute, event_time) as window_start, count(*) as late_requests
    from {{ partition late_events }}
    group by window_start
),

raw_minutes as (
    select
        archived.window_start,
        archived.archived_requests - coalesce(late.late_requests, 0) as event_requests
    from archived_minutes as archived
    left join late_minutes as late using (window_start)
)

select
    emitted.window_start,
    emitted.account_requests,
    -- a window with aggregates but no raw events at all counts as 0 raw, which fails loudly
    coalesce(raw.event_requests, 0) as event_requests,
    coalesce(country.country_requests, 0) as country_requests
from emitted_windows as emitted
left join raw_minutes as raw using (window_start)
left join country_windows as country using (window_start)
order by emitted.window_start
