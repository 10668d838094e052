"""Data-quality gates over committed lake partitions."""
