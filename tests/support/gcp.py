"""Fixtures for the gcp test server (filled in by its connector work)."""
