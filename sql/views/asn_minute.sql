-- asn_minute: 1-minute tumbling aggregates per autonomous system.
create or replace view asn_minute as
select * from {{ lake asn_minute }}
