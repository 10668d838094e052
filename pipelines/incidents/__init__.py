"""Signals to incidents: the engine, the state database, the audit log, routing to people."""
