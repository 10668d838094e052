"""Compliance reports and the scheduler that runs them."""
