-- country_minute: 1-minute tumbling aggregates per country; a null country is unknown geo.
create or replace view country_minute as
select * from {{ lake country_minute }}
