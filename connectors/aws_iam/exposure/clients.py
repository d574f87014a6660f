"""Clients of the exposure reader: S3 (the trail bucket, home credentials), Secrets Manager, SSM,
KMS and IAM per account and region (AssumeRole into other accounts, like the IAM source), and
CloudTrail for a Lake event data store.

Built on first use from the same injected ``AwsClients`` as the source (tests and the demo pass
a ``boto3.Session``; hooks on its events see every call), or from the standard AWS credential
chain (environment, ``profile``, instance role) through a botocore session.
"""

from __future__ import annotations

import threading
from typing import Any

from connectors.aws_iam.clients import ClientProvider, DefaultSession, client_kwargs

Client = Any


class ExposureClients:
    """One client per (account, service, region), cached; AssumeRole once per other account."""

    def __init__(self, provider: ClientProvider) -> None:
        self.provider = provider
        self.settings = provider.settings
        self._lock = threading.Lock()
        self._session: Any = provider.injected.session
        self._clients: dict[tuple[str, str, str], Client] = {}
        self._credentials: dict[str, Any] = {}

    def _get_session(self) -> Any:
        if self._session is None:
            self._session = DefaultSession.of(self.settings)
        return self._session

    def _make(self, service: str, region: str, credentials: Any = None) -> Client:
        from dataclasses import replace

        kwargs = client_kwargs(replace(self.settings, region=region), credentials)
        return self._get_session().client(service, **kwargs)

    def home(self, service: str, region: str | None = None) -> Client:
        """A client with the source's own credentials (the trail bucket, CloudTrail Lake)."""
        return self.client("", service, region or self.settings.region)

    def client(self, account: str, service: str, region: str) -> Client:
        """A client for ``service`` in ``account`` (home account: "") and ``region``."""
        key = (account, service, region)
        with self._lock:
            if key in self._clients:
                return self._clients[key]
        credentials = None
        if account and account != self.provider.home_account():
            credentials = self._assumed(account)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._make(service, region, credentials)
            return self._clients[key]

    def _assumed(self, account: str) -> Any:
        template = self.settings.assume_role
        if template is None:
            from offboard_audit.core.errors import SourceError

            raise SourceError(f"account {account}: no assume_role configured to reach it")
        with self._lock:
            cached = self._credentials.get(account)
        if cached is not None:
            return cached
        params: dict[str, Any] = {
            "RoleArn": template.format(account=account),
            "RoleSessionName": self.settings.role_session_name,
        }
        if self.settings.external_id:
            params["ExternalId"] = self.settings.external_id
        credentials = self.provider.sts().assume_role(**params)["Credentials"]
        with self._lock:
            self._credentials[account] = credentials
        return credentials
