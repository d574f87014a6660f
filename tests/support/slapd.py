"""Fixtures for the slapd test server (filled in by its connector work)."""
