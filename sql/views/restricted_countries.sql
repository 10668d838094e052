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
)
