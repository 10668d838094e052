-- account_minute: 1-minute tumbling aggregates per account (window_start/window_end are UTC).
create or replace view account_minute as
select * from {{ lake account_minute }}
