-- ip_minute: 1-minute tumbling aggregates per source IP, with its ASN classification.
create or replace view ip_minute as
select * from {{ lake ip_minute }}
