# The Vault / OpenBao ACL policy offboard-audit needs (type = "vault"), mount paths as configured
# by default (userpass at auth/userpass, KV v2 at secret/, transit at transit/, AppRole at
# auth/approle, PKI at pki/): adjust the paths to your mounts. The tests log in with exactly this
# policy (tests/connectors/vault/test_cli.py). It never grants a read of a secret's value: no
# secret/data/*, no transit/export/*, no transit/backup/*.

# --- accounts: entities, their logins and tokens (source.py) -------------------------------------
path "identity/entity/id" { capabilities = ["list"] }
path "identity/entity/id/*" { capabilities = ["read", "update"] }   # update: disable_entity and its undo
path "sys/auth" { capabilities = ["read"] }
path "auth/userpass/users" { capabilities = ["list"] }
path "auth/userpass/users/*" { capabilities = ["read", "delete"] }   # delete: delete_userpass_login
path "auth/token/accessors" { capabilities = ["list", "sudo"] }      # the leavers' tokens (tokens = true)
path "auth/token/lookup-accessor" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }      # revoke_token
path "identity/lookup/entity" { capabilities = ["update"] }          # whose login a userpass user is

# --- exposure: the inventory of what leavers touched (exposure.py); the audit log is a file ----
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }          # a KV mount's version
path "secret/metadata/*" { capabilities = ["read"] }                 # KV v2 versions, custom_metadata
path "transit/keys/*" { capabilities = ["read"] }                    # versions, min_decryption_version
path "transit/keys/+/rotate" { capabilities = ["update"] }           # only with policy.auto_rotate_secrets
path "auth/approle/role/+/secret-id" { capabilities = ["list"] }     # secret-ids leavers made
path "auth/approle/role/+/secret-id-accessor/lookup" { capabilities = ["update"] }  # when listed ones were made
path "pki/certs/revoked" { capabilities = ["list"] }                 # certificates leavers had issued
path "sys/audit" { capabilities = ["read", "sudo"] }                 # the file device (or set audit_device)
path "sys/audit-hash/*" { capabilities = ["update"] }                # match the log's HMAC'd accessors/serials
# A KV v1 mount: list only (whether a secret still exists), e.g.
# path "kv1/*" { capabilities = ["list"] }
