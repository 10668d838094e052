-- restricted_countries: the dated, sourced list of countries whose access is restricted
-- (schemas/reference/restricted_countries.csv; see schemas/reference/README.md for each row's basis).
-- Explicit column types so a malformed date fails loudly instead of silently becoming a string.
create or replace view restricted_countries as
select *
from read_csv(
    {{ reference restricted_countries.csv }},
    header = true,
    auto_detect = false,
    columns = {
        'country_code': 'varchar',
        'country_name': 'varchar',
        'regime': 'varchar',
        'basis': 'varchar',
        'source': 'varchar',
        'effective_from': 'date',
        'effective_to': 'date',
        'notes': 'varchar'
    }
);

-- in_force(at_time, effective_from, effective_to): whether a dated row of the list applies at at_time
-- (from effective_from inclusive to effective_to exclusive; no effective_to: still in force). Every reader
-- joins the list on it, so re-running over old partitions gives the answer that was right back then.
create or replace macro in_force(at_time, effective_from, effective_to) as
    at_time >= effective_from and (effective_to is null or at_time < effective_to);
