-- events: every valid access event, one row per request (raw archive written by the Flink job).
-- event_time is UTC; country is ISO 3166-1 alpha-2 or null when GeoIP had no answer.
-- {{ lake events }} expands to the committed Parquet files, or to a typed empty relation on a young lake.
create or replace view events as
select * from {{ lake events }}
