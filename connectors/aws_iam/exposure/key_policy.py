"""Pure: which other AWS accounts a KMS key policy lets use the key.

Read twice: from the policy a ``PutKeyPolicy`` / ``CreateKey`` record carries (what the caller
set) and from ``GetKeyPolicy`` (what is in force now). An account both name is a door the caller
opened and nobody closed: whoever holds that account signs or decrypts with the key from there,
whatever becomes of the caller's own logins, and rotating the key does not close it.

Deliberately wide (a missed door is worse than a reported one): ``Deny`` statements and
conditions other than a caller-account restriction of ``"*"`` are not evaluated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from offboard_audit.core.exposure import POLICY_GRANTEE_PREFIX

# The operations that use the key material (or hand out its use: a grant, a new policy).
# GetPublicKey and Verify are left out: a public key is no secret.
USE_OPERATIONS = (
    "kms:decrypt",
    "kms:encrypt",
    "kms:reencryptfrom",
    "kms:reencryptto",
    "kms:generatedatakey",
    "kms:generatedatakeypair",
    "kms:generatedatakeywithoutplaintext",
    "kms:generatedatakeypairwithoutplaintext",
    "kms:generatemac",
    "kms:sign",
    "kms:derivesharedsecret",
    "kms:creategrant",
    "kms:putkeypolicy",
)
ANY_ACCOUNT = "*"
_ACCOUNT = re.compile(r"^(?:arn:aws[\w-]*:(?:iam|sts)::)?(\d{12})(?:$|:)")
# Condition keys that restrict a "*" principal to the callers of some accounts.
_CALLER_ACCOUNT_KEYS = frozenset({"kms:calleraccount", "aws:principalaccount"})


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _uses(statement: dict[str, Any]) -> bool:
    """Whether the statement's actions include a use of the key."""
    if "NotAction" in statement:
        excluded = [str(p).lower() for p in _list(statement["NotAction"])]
        return any(not any(fnmatchcase(op, p) for p in excluded) for op in USE_OPERATIONS)
    patterns = [str(p).lower() for p in _list(statement.get("Action"))]
    return any(fnmatchcase(op, p) for op in USE_OPERATIONS for p in patterns)


def _caller_accounts(statement: dict[str, Any]) -> list[str] | None:
    """The accounts a ``StringEquals`` caller-account condition restricts the statement to."""
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return None
    for operator, tests in condition.items():
        if str(operator).lower() != "stringequals" or not isinstance(tests, dict):
            continue
        for key, values in tests.items():
            if str(key).lower() in _CALLER_ACCOUNT_KEYS:
                return [str(v) for v in _list(values)]
    return None


def _principals(statement: dict[str, Any]) -> Iterable[str]:
    """The accounts the statement's principals belong to ("*": any)."""
    if "NotPrincipal" in statement:
        yield ANY_ACCOUNT  # everyone but the ones named
        return
    principal = statement.get("Principal")
    values = _list(principal.get("AWS")) if isinstance(principal, dict) else [principal]
    for v in values:
        text = str(v)
        if text == ANY_ACCOUNT:
            restricted = _caller_accounts(statement)
            yield from restricted if restricted is not None else (ANY_ACCOUNT,)
            continue
        m = _ACCOUNT.match(text)
        if m:
            yield m.group(1)
        # Anything else is a service, a federated provider or the unique id AWS puts in place of
        # a deleted principal: no account's identity can act through it.


def outside_accounts(document: Any, scope: str) -> list[str]:
    """The accounts other than ``scope`` (``"*"``: any account) that an ``Allow`` statement of the
    key policy ``document`` (JSON text or parsed) lets use the key. Raises ValueError when the
    document is not a policy: what it lets in cannot be told."""
    if isinstance(document, str):
        document = json.loads(document)
    if not isinstance(document, dict):
        raise ValueError("a key policy is not a JSON object")
    found: set[str] = set()
    for st in _list(document.get("Statement")):
        if not isinstance(st, dict):
            raise ValueError("a key policy statement is not a JSON object")
        if str(st.get("Effect")) != "Allow" or not _uses(st):
            continue
        found.update(a for a in _principals(st) if a != scope)
    return sorted(found)


def policy_grantee(account: str) -> str:
    """The ``ObjectRef.owner`` / ``SecretState.grantees`` entry for an account a key policy lets in."""
    return f"{POLICY_GRANTEE_PREFIX}{account}"
