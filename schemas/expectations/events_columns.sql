-- Batch for the events_columns suite: no rows, only the columns physically present in the
-- partition's files. A silent upstream schema change (a renamed or dropped field) shows up here
-- before the typed lake views quietly fill the missing column with nulls.
select *
from {{ partition_files events }}
limit 0
