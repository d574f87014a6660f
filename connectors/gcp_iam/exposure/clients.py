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
from collections.abc import Callable
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
        return self._client("logging", _logging_classes, self.settings.logging_endpoint)

    def secrets(self) -> Any:
        return self._client("secrets", _secrets_classes, self.settings.secret_manager_endpoint)

    def kms(self) -> Any:
        return self._client("kms", _kms_classes, self.settings.kms_endpoint)

    def _client(self, field: str, classes: Callable[[], tuple[Any, Any]], endpoint: str | None) -> Any:
        """The client in ``ExposureClients.<field>`` (injected or built before), else a new one, kept."""
        with self._lock:
            client = getattr(self._clients, field)
            if client is None:
                client = _grpc_client(classes(), endpoint)
                setattr(self._clients, field, client)
            return client

    def close(self) -> None:
        self._clients.close()


def _grpc_client(classes: tuple[Any, Any], endpoint: str | None) -> Any:
    """A client of one of the libraries: ``classes`` is (its client class, its gRPC transport class)."""
    client_class, transport_class = classes
    if endpoint:
        import grpc

        # A private/local endpoint speaks plaintext gRPC: no TLS, no credentials.
        return client_class(transport=transport_class(channel=grpc.insecure_channel(endpoint)))
    return client_class()


# The libraries are imported on first use only (never at import time): one function per service.


def _logging_classes() -> tuple[Any, Any]:
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
    from google.cloud.logging_v2.services.logging_service_v2.transports import (
        LoggingServiceV2GrpcTransport,
    )

    return LoggingServiceV2Client, LoggingServiceV2GrpcTransport


def _secrets_classes() -> tuple[Any, Any]:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    return SecretManagerServiceClient, SecretManagerServiceGrpcTransport


def _kms_classes() -> tuple[Any, Any]:
    from google.cloud.kms_v1 import KeyManagementServiceClient
    from google.cloud.kms_v1.services.key_management_service.transports import (
        KeyManagementServiceGrpcTransport,
    )

    return KeyManagementServiceClient, KeyManagementServiceGrpcTransport


def injected_exposure_clients(name: str, clients: Any) -> ExposureClients | None:
    """``ctx.clients["<name>/exposure"]`` when tests injected one; else None (built on first use)."""
    client = clients.get(f"{name}/exposure")
    if client is not None and not isinstance(client, ExposureClients):
        raise TypeError(f"injected client for {name}/exposure must be an ExposureClients, got {type(client)}")
    return client
