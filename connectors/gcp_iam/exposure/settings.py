"""The ``[sources.exposure]`` table of a ``gcp_iam`` source, parsed once into a frozen value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from offboard_audit.core.options import SourceOptions

# Every key of [sources.exposure] with its help (the ``exposure`` entry of the source's OPTIONS
# names them; ``config check`` and docs/configuration.md print that entry).
EXPOSURE_OPTIONS: dict[str, str] = {
    "audit_logs": "Read Cloud Audit Logs through the Logging API (entries.list), incrementally per "
    "project (default true).",
    "secret_manager": "Read the Secret Manager inventory: secrets and their versions (default true).",
    "kms": "Read the Cloud KMS keys that leavers' events name and their versions (default true).",
    "lookback": 'How far back the first read of a project\'s audit logs goes (default "365d").',
    "overlap": "Window before the checkpoint re-read on each run, for entries Cloud Logging receives "
    'late; entries already read in it are skipped (default "10m").',
    "page_size": "Log entries per entries.list page (default 1000).",
    "owner_label_keys": "Annotation (Secret Manager) or label keys naming who rotates a secret or key "
    '(default ["owner"]; labels cannot hold "@": a label value is kept as written).',
    "signing_labels": 'Labels "key=value" that mark a secret as a signing key (default '
    '["purpose=signing", "signing=true"]); ASYMMETRIC_SIGN / MAC keys are signing keys anyway.',
    "logging_endpoint": "Optional plaintext gRPC host:port of a Cloud Logging endpoint (tests, private "
    "endpoints); default: Google with Application Default Credentials.",
    "secret_manager_endpoint": "Optional plaintext gRPC host:port of a Secret Manager endpoint.",
    "kms_endpoint": "Optional plaintext gRPC host:port of a Cloud KMS endpoint.",
}

_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d+$")


@dataclass(frozen=True, slots=True)
class ExposureSettings:
    audit_logs: bool = True
    secret_manager: bool = True
    kms: bool = True
    lookback: timedelta = timedelta(days=365)
    overlap: timedelta = timedelta(minutes=10)
    page_size: int = 1000
    owner_label_keys: tuple[str, ...] = ("owner",)
    signing_labels: tuple[tuple[str, str], ...] = (("purpose", "signing"), ("signing", "true"))
    logging_endpoint: str | None = None
    secret_manager_endpoint: str | None = None
    kms_endpoint: str | None = None


def parse_exposure(options: SourceOptions) -> ExposureSettings | None:
    """The source's ``exposure`` table, or None when it has none. Errors name their key."""
    if "exposure" not in options:
        return None
    table = options.table("exposure")
    table.only(EXPOSURE_OPTIONS)
    endpoints: dict[str, str | None] = {}
    for key in ("logging_endpoint", "secret_manager_endpoint", "kms_endpoint"):
        value = table.opt_str(key)
        if value is not None and not _HOSTPORT.match(value):
            raise table.error(key, f"must be host:port (plaintext gRPC), got {value!r}")
        endpoints[key] = value
    signing = table.pairs("signing_labels", ("purpose=signing", "signing=true"))
    settings = ExposureSettings(
        audit_logs=table.flag("audit_logs", True),
        secret_manager=table.flag("secret_manager", True),
        kms=table.flag("kms", True),
        lookback=table.duration("lookback", timedelta(days=365)),
        overlap=table.duration("overlap", timedelta(minutes=10)),
        page_size=table.integer("page_size", 1000, minimum=1),
        owner_label_keys=tuple(k.casefold() for k in table.strings("owner_label_keys", ("owner",))),
        signing_labels=signing,
        logging_endpoint=endpoints["logging_endpoint"],
        secret_manager_endpoint=endpoints["secret_manager_endpoint"],
        kms_endpoint=endpoints["kms_endpoint"],
    )
    if not (settings.audit_logs or settings.secret_manager or settings.kms):
        raise table.error("audit_logs", "audit_logs, secret_manager and kms are all false: nothing to read")
    return settings
