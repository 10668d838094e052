"""Traffic generators: the classic seeded generator and the field profile."""
