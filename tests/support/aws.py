"""Fixtures for the aws test server (filled in by its connector work)."""
