"""Errors of single IAM calls, worded so that an operator knows what failed and what to do.

botocore's own errors do not always say which call failed (an endpoint answering with an HTML
error page gives a ``ResponseParserError`` carrying the page), and never which user was
being read or how to stop reading a credential kind the endpoint does not implement.
:func:`explain_call` names the IAM API call, the user, the AWS account and, where a config
option turns that credential kind off, the option. No HTML ever reaches the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from offboard_audit.core.errors import SourceError


@dataclass(frozen=True, slots=True)
class KindOption:
    """A config option of the ``aws_iam`` source that turns one credential kind off."""

    option: str
    what: str


_SERVICE_CREDENTIALS = KindOption("service_specific_credentials", "service-specific credentials")
_SSH_KEYS = KindOption("ssh_public_keys", "SSH public keys")

# IAM calls (read and write) that serve one credential kind a config option can turn off.
KIND_OPTIONS: Mapping[str, KindOption] = {
    "ListServiceSpecificCredentials": _SERVICE_CREDENTIALS,
    "UpdateServiceSpecificCredential": _SERVICE_CREDENTIALS,
    "ListSSHPublicKeys": _SSH_KEYS,
    "UpdateSSHPublicKey": _SSH_KEYS,
}

# Error codes that mean "this endpoint does not implement the call" (AWS-compatible endpoints).
_UNSUPPORTED_CODES = frozenset(
    {
        "NotImplemented",
        "NotImplementedException",
        "InvalidAction",
        "UnknownOperation",
        "UnknownOperationException",
        "UnsupportedOperation",
    }
)
_TITLE = re.compile(r"<title>\s*(.*?)\s*</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_MAX_TEXT = 300

T = TypeVar("T")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``NoSuchEntity``, ...), or None."""
    error = _response(exc).get("Error")
    code = error.get("Code") if isinstance(error, Mapping) else None
    return str(code) if code else None


def unless_missing(call: Callable[..., T], **params: object) -> T | None:
    """``call(**params)``, or None when IAM answers ``NoSuchEntity`` (any other error is raised)."""
    try:
        return call(**params)
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


def describe(exc: BaseException) -> str:
    """``Type: message`` for a log line or a scope failure."""
    text = str(exc) or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


class AwsCallError(SourceError):
    """One IAM call failed while reading; the message comes from :func:`explain_call`."""


def _response(exc: BaseException) -> Mapping[str, object]:
    response = getattr(exc, "response", None)
    return response if isinstance(response, Mapping) else {}


def _clean(text: str) -> str:
    """Text fit for one line of an error: an HTML page becomes its title, never the page."""
    text = text.strip()
    lowered = text.lower()
    if "<html" in lowered or "<!doctype" in lowered or "<title" in lowered or "<body" in lowered:
        title = _TITLE.search(text)
        return f"HTML page {title.group(1)!r}" if title else "an HTML page"
    text = " ".join(_TAG.sub(" ", text).split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _reason(exc: BaseException) -> tuple[str, bool]:
    """(what went wrong in one line, whether it looks like an unimplemented call)."""
    response = _response(exc)
    error = response.get("Error")
    meta = response.get("ResponseMetadata")
    if isinstance(error, Mapping):
        code = str(error.get("Code") or "")
        message = _clean(str(error.get("Message") or ""))
        status = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
        retries = meta.get("RetryAttempts") if isinstance(meta, Mapping) else None
        parts = [f"{code}: {message}" if message and message != code else code or "error"]
        if isinstance(status, int):
            parts.append(f"HTTP {status}")
        if isinstance(retries, int) and retries > 0:
            parts.append(f"after {retries + 1} attempts")
        unsupported = code in _UNSUPPORTED_CODES or (isinstance(status, int) and status >= 500)
        return ", ".join(parts), unsupported
    name = type(exc).__name__
    if name == "ResponseParserError":
        # botocore could not parse the answer: not an AWS response (an HTML error page, ...).
        return f"the endpoint did not answer like AWS ({_clean(str(exc))})", True
    return f"{name}: {_clean(str(exc)) or name}", False


def explain_call(api: str, user: str, exc: BaseException, *, source: str, scope: str = "") -> str:
    """One line: which call failed for which user, why, and the option that avoids the call."""
    where = f"IAM user {user!r}" + (f" in account {scope}" if scope else "")
    reason, unsupported = _reason(exc)
    text = f"iam:{api} for {where} failed: {reason}"
    if unsupported:
        kind = KIND_OPTIONS.get(api)
        if kind is not None:
            text += (
                f". If this endpoint does not implement {api}, set {kind.option} = false on source "
                f"{source!r} to stop reading {kind.what} (they are then not audited)"
            )
        else:
            text += f". {api} is required by the aws_iam source; the endpoint must implement it"
    return text


__all__ = [
    "KIND_OPTIONS",
    "AwsCallError",
    "KindOption",
    "describe",
    "error_code",
    "explain_call",
    "unless_missing",
]
