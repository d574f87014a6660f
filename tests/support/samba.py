"""Fixtures for the samba test server (filled in by its connector work)."""
