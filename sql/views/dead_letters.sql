-- dead_letters: malformed input rejected during a replay, with the reason and the raw record.
create or replace view dead_letters as
select * from {{ lake dead_letters }}
