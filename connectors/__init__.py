"""One package per system (hr_records, ldap, aws_iam, gcp_iam), each with a source and a revoker.

Connectors import only the core's records, options and protocols; the core reaches them only
through ``offboard_audit.config.registry``.
"""
