"""Where the AWS clients come from: injected ones (tests, demo) or a botocore session; and IAM's
``Marker`` pagination (:func:`pages`, :func:`items`), used by the source and the revoker.

A :class:`ClientProvider` hands out one IAM client per AWS account: the injected client for
the home account, a client built from ``AssumeRole`` credentials for the others. boto3
clients are thread-safe but sessions are not, so client creation is serialised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.aws_iam.payloads import as_aware
from connectors.aws_iam.settings import AwsSettings
from offboard_audit.core.errors import SourceError

_REFRESH_MARGIN = timedelta(minutes=5)

# boto3-stubs for iam/sts/organizations are optional; the clients are typed loosely here.
Client = Any


@dataclass(frozen=True)
class AwsClients:
    """What tests and the demo inject as ``ctx.clients[<source name>]``.

    ``session`` (a boto3.Session used for anything not given), ``iam`` / ``sts`` /
    ``organizations`` (home-account clients), ``iam_by_account`` (per-account IAM clients used
    instead of AssumeRole). A bare IAM client may be injected instead (taken as ``iam``), or a
    bare ``boto3.Session`` (taken as ``session``).
    """

    session: Any = None
    iam: Client = None
    sts: Client = None
    organizations: Client = None
    iam_by_account: Mapping[str, Client] = field(default_factory=dict)

    @staticmethod
    def coerce(value: Any) -> AwsClients:
        if value is None:
            return AwsClients()
        if isinstance(value, AwsClients):
            return value
        service = getattr(getattr(getattr(value, "meta", None), "service_model", None), "service_name", None)
        if service == "iam":
            return AwsClients(iam=value)
        import boto3

        if isinstance(value, boto3.session.Session):
            # Every client (home and assumed-role) is built from it, so hooks on its events see all calls.
            return AwsClients(session=value)
        raise TypeError(
            f"cannot use {type(value).__name__} as injected AWS clients "
            "(want AwsClients, a boto3.Session or an IAM client)"
        )


def parse_aws_timestamp(value: Any) -> datetime:
    """A timestamp of an AWS answer, as a UTC-aware datetime.

    AWS sends ISO 8601 (``2026-11-28T09:15:02Z``, with or without fractions); the standard
    library reads that in microseconds. botocore's default goes through dateutil's general
    parser, which costs ~50 µs a value: a third of the parse time of a 2,000-user
    GetAccountAuthorizationDetails page. Anything else (epoch seconds, RFC 822) goes to
    botocore's own parser, so nothing it accepts is refused here.
    """
    # Only the extended form (with "-"): "20261128" is epoch seconds to botocore, not a date.
    if isinstance(value, str) and "-" in value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return as_aware(parsed)
    from botocore.utils import parse_timestamp

    return as_aware(parse_timestamp(value))


def fast_timestamps_session() -> Any:
    """A botocore session whose response parsers read timestamps with :func:`parse_aws_timestamp`
    (botocore's documented ``response_parser_factory`` component)."""
    import botocore.session

    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_aws_timestamp)
    return session


@dataclass(frozen=True)
class DefaultSession:
    """What clients are made from when no session is injected: a botocore session with the
    settings' ``profile`` and ``region`` (set as ``boto3.Session`` sets them), timestamps read by
    :func:`parse_aws_timestamp`, and ``boto3.Session``'s ``client`` method. boto3 itself is not
    imported: it adds 0.13 s of start-up (s3transfer, mostly) and nothing used here."""

    botocore_session: Any

    @classmethod
    def of(cls, settings: AwsSettings) -> DefaultSession:
        session = fast_timestamps_session()
        if settings.profile:
            session.set_config_variable("profile", settings.profile)
        if settings.region:
            session.set_config_variable("region", settings.region)
        return cls(session)

    def client(self, service: str, **kwargs: Any) -> Client:
        return self.botocore_session.create_client(service, **kwargs)


def client_config(settings: AwsSettings) -> Any:
    """botocore Config: standard/adaptive retries so that throttling is retried, not swallowed."""
    from botocore.config import Config

    # total_max_attempts counts the first call too (botocore's "max_attempts" counts retries only).
    retries: Any = {"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts}
    return Config(
        region_name=settings.region,
        retries=retries,
        max_pool_connections=max(10, settings.max_workers + 2),
        connect_timeout=10,
        read_timeout=60,
    )


def client_kwargs(settings: AwsSettings, credentials: Mapping[str, Any] | None) -> dict[str, Any]:
    """``session.client(service, **kwargs)``'s arguments: the botocore config, the endpoint if
    one is set and the ``Credentials`` of an ``AssumeRole`` answer if given."""
    kwargs: dict[str, Any] = {"config": client_config(settings)}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    if credentials is not None:
        kwargs["aws_access_key_id"] = credentials["AccessKeyId"]
        kwargs["aws_secret_access_key"] = credentials["SecretAccessKey"]
        kwargs["aws_session_token"] = credentials["SessionToken"]
    return kwargs


class ClientProvider:
    """Builds (once) and caches clients. Calls sts:GetCallerIdentity (once) and sts:AssumeRole
    (once per other account, refreshed 5 minutes before the credentials expire)."""

    def __init__(self, settings: AwsSettings, injected: AwsClients) -> None:
        self.settings = settings
        self.injected = injected
        self._lock = threading.Lock()
        self._session: Any = injected.session
        self._clients: dict[tuple[str, str], Client] = {}
        self._expires: dict[str, datetime] = {}
        self._home_account: str | None = None

    def _get_session(self) -> Any:
        if self._session is None:
            self._session = DefaultSession.of(self.settings)
        return self._session

    def _make(self, service: str, credentials: Mapping[str, Any] | None = None) -> Client:
        return self._get_session().client(service, **client_kwargs(self.settings, credentials))

    def _home(self, service: str) -> Client:
        injected = getattr(self.injected, service)
        if injected is not None:
            return injected
        with self._lock:
            key = ("", service)
            if key not in self._clients:
                self._clients[key] = self._make(service)
            return self._clients[key]

    def sts(self) -> Client:
        return self._home("sts")

    def organizations(self) -> Client:
        return self._home("organizations")

    def home_iam(self) -> Client:
        return self._home("iam")

    def home_account(self) -> str:
        if self._home_account is None:
            self._home_account = str(self.sts().get_caller_identity()["Account"])
        return self._home_account

    def iam_for(self, account: str) -> Client:
        if account in self.injected.iam_by_account:
            return self.injected.iam_by_account[account]
        template = self.settings.assume_role
        if template is None:
            if account == self.home_account():
                return self.home_iam()
            raise SourceError(f"account {account}: no assume_role configured to reach it")
        with self._lock:
            cached = self._clients.get((account, "iam"))
            expires = self._expires.get(account)
        if cached is not None and (expires is None or expires - datetime.now(UTC) > _REFRESH_MARGIN):
            return cached
        role_arn = template.format(account=account)
        if self.settings.external_id:
            response = self.sts().assume_role(
                RoleArn=role_arn,
                RoleSessionName=self.settings.role_session_name,
                ExternalId=self.settings.external_id,
            )
        else:
            response = self.sts().assume_role(
                RoleArn=role_arn, RoleSessionName=self.settings.role_session_name
            )
        credentials = response["Credentials"]
        with self._lock:
            client = self._make("iam", credentials)
            self._clients[(account, "iam")] = client
            expiration = credentials.get("Expiration")
            if isinstance(expiration, datetime):
                self._expires[account] = as_aware(expiration)
        return client


def pages(call: Callable[..., Mapping[str, Any]], **params: Any) -> Iterator[Mapping[str, Any]]:
    """Follow IAM's ``IsTruncated``/``Marker`` pagination (moto never truncates; AWS does)."""
    marker: str | None = None
    while True:
        kwargs = dict(params)
        if marker is not None:
            kwargs["Marker"] = marker
        page = call(**kwargs)
        yield page
        if not page.get("IsTruncated"):
            return
        next_marker = page.get("Marker")
        if not next_marker or next_marker == marker:
            raise SourceError("IAM returned a truncated page without a new Marker")
        marker = str(next_marker)


def items(call: Callable[..., Mapping[str, Any]], result_key: str, **params: Any) -> list[Any]:
    """Every ``result_key`` entry over all pages of one IAM list call."""
    out: list[Any] = []
    for page in pages(call, **params):
        out.extend(page.get(result_key) or ())
    return out
