"""Clients of the exposure reader: Cloud Logging, Secret Manager and Cloud KMS (gRPC).

Injected (``ctx.clients["<source name>/exposure"]``, an :class:`ExposureClients`) or built on
first use, never at import time: from ``logging_endpoint`` / ``secret_manager_endpoint`` /
``kms_endpoint`` (plaintext gRPC to a private or local endpoint, no credentials), otherwise the
libraries' defaults with Application Default Credentials. IAM Admin and Resource Manager calls
(service-account keys, IAM policies and their audit configs) go through the source's own
:class:`~connectors.gcp_iam.clients.GcpClients`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from connectors.gcp_iam.exposure.settings import ExposureSettings


@dataclass
class ExposureClients:
    """``logging``: ``logging_v2.services.logging_service_v2.LoggingServiceV2Client``;
    ``secrets``: ``secretmanager_v1.SecretManagerServiceClient``;
    ``kms``: ``kms_v1.KeyManagementServiceClient``. Any may be None: built on first use."""

    logging: Any = None
    secrets: Any = None
    kms: Any = None

    def close(self) -> None:
        for client in (self.logging, self.secrets, self.kms):
            transport = getattr(client, "transport", None)
            if transport is not None:
                transport.close()


class ClientCache:
    """Builds each client once, on first use, from the settings (or takes the injected one)."""

    def __init__(self, settings: ExposureSettings, injected: ExposureClients | None = None) -> None:
        self.settings = settings
        self._clients = injected or ExposureClients()
        self._lock = threading.Lock()

    def logging(self) -> Any:
        with self._lock:
            if self._clients.logging is None:
                self._clients.logging = _logging_client(self.settings.logging_endpoint)
            return self._clients.logging

    def secrets(self) -> Any:
        with self._lock:
            if self._clients.secrets is None:
                self._clients.secrets = _secrets_client(self.settings.secret_manager_endpoint)
            return self._clients.secrets

    def kms(self) -> Any:
        with self._lock:
            if self._clients.kms is None:
                self._clients.kms = _kms_client(self.settings.kms_endpoint)
            return self._clients.kms

    def close(self) -> None:
        self._clients.close()


def _logging_client(endpoint: str | None) -> Any:
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
    from google.cloud.logging_v2.services.logging_service_v2.transports import (
        LoggingServiceV2GrpcTransport,
    )

    if endpoint:
        import grpc

        # A private/local endpoint speaks plaintext gRPC: no TLS, no credentials.
        channel = grpc.insecure_channel(endpoint)
        return LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=channel))
    return LoggingServiceV2Client()


def _secrets_client(endpoint: str | None) -> Any:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    if endpoint:
        import grpc

        channel = grpc.insecure_channel(endpoint)
        return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    return SecretManagerServiceClient()


def _kms_client(endpoint: str | None) -> Any:
    from google.cloud.kms_v1 import KeyManagementServiceClient
    from google.cloud.kms_v1.services.key_management_service.transports import (
        KeyManagementServiceGrpcTransport,
    )

    if endpoint:
        import grpc

        channel = grpc.insecure_channel(endpoint)
        return KeyManagementServiceClient(transport=KeyManagementServiceGrpcTransport(channel=channel))
    return KeyManagementServiceClient()


def injected_exposure_clients(name: str, clients: Any) -> ExposureClients | None:
    """``ctx.clients["<name>/exposure"]`` when tests injected one; else None (built on first use)."""
    client = clients.get(f"{name}/exposure")
    if client is not None and not isinstance(client, ExposureClients):
        raise TypeError(f"injected client for {name}/exposure must be an ExposureClients, got {type(client)}")
    return client
