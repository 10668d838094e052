-- minute_window_checks(window_start, window_end, partition_start, partition_end): the columns the data
-- quality suites of every 1-minute aggregate (schemas/expectations/*_minute.sql) check, as one struct
-- that a batch unnests into three columns:
--   window_start_offset_ms  a tumbling 1-minute window starts on a whole minute (0)
--   window_length_ms        and lasts exactly 60 s (60000)
--   in_partition_hour       aggregates are partitioned by window_start: a row outside its hour is a bug
create or replace macro minute_window_checks(window_start, window_end, partition_start, partition_end) as {
    'window_start_offset_ms': epoch_ms(window_start) % 60000,
    'window_length_ms': epoch_ms(window_end) - epoch_ms(window_start),
    'in_partition_hour': window_start >= partition_start and window_start < partition_end
};
