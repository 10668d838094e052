"""The Parquet lake: its layout, the DuckDB batch equivalent of the job, compaction, the analyst views."""
