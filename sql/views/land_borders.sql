-- land_borders: pairs of countries sharing a land border, both directions
-- (schemas/reference/land_borders.csv; source and licence in schemas/reference/README.md).
-- Geography detections treat a hop between neighbours like a hop inside one country: GeoIP near a
-- border routinely lands on the other side, and a neighbour is reached by train or car.
create or replace view land_borders as
select *
from read_csv(
    {{ reference land_borders.csv }},
    header = true,
    auto_detect = false,
    columns = {'country_code': 'varchar', 'border_country_code': 'varchar'}
)
