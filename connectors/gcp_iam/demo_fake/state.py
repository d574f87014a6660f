"""The in-memory Google Cloud behind the demo's fake servers: organizations, folders, projects,
their IAM policies (with etags), service accounts and keys, and last-authentication activity.

Every service account gets a ``uniqueId`` never given before, so one deleted and recreated
under the same email gets a new one, as in Google. The three hook methods do nothing here;
the tests' subclass (``tests/support/gcp.py``) uses them for call counters and failure
injection.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class FakeApiError(Exception):
    """A call the fake answers with an error: ``code`` is the gRPC status name
    (``PERMISSION_DENIED``, ...); ``http_status`` overrides the REST status derived from it."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeKey:
    name: str
    key_id: str
    created: datetime
    expires: datetime | None = None
    disabled: bool = False
    system_managed: bool = False
    last_auth: datetime | None = None


@dataclass
class FakeServiceAccount:
    project: str
    email: str
    unique_id: str
    display_name: str = ""
    description: str = ""
    disabled: bool = False
    keys: dict[str, FakeKey] = field(default_factory=dict)
    last_auth: datetime | None = None

    @property
    def name(self) -> str:
        return f"projects/{self.project}/serviceAccounts/{self.email}"


@dataclass(kw_only=True)
class FakePolicyHolder:
    """A resource with an IAM policy: a project, a folder or an organization."""

    # Each binding: {"role": str, "members": [str], "condition": {title, description, expression}?}
    bindings: list[dict[str, Any]] = field(default_factory=list)
    version: int = 1
    revision: int = 1

    @property
    def policy_key(self) -> str:
        """The key of this resource in call counters, failures and hooks."""
        raise NotImplementedError

    @property
    def etag(self) -> bytes:
        return f"etag-{self.policy_key}-{self.revision}".encode()

    def policy_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "etag": base64.b64encode(self.etag).decode("ascii"),
            "bindings": [dict(b, members=list(b["members"])) for b in self.bindings],
        }


@dataclass
class FakeProject(FakePolicyHolder):
    project_id: str
    number: str
    parent: str
    state: str = "ACTIVE"

    @property
    def policy_key(self) -> str:
        return self.project_id


@dataclass
class FakeFolder(FakePolicyHolder):
    name: str
    parent: str
    state: str = "ACTIVE"

    @property
    def policy_key(self) -> str:
        return self.name


@dataclass
class FakeOrganization(FakePolicyHolder):
    name: str

    @property
    def policy_key(self) -> str:
        return self.name


class GcpFakeState:
    """The fake cloud. Every method takes the lock: both servers call in from their threads."""

    def __init__(self, page_size: int = 100) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, FakeProject] = {}
        self.folders: dict[str, FakeFolder] = {}
        self.organizations: dict[str, FakeOrganization] = {}
        self.service_accounts: dict[str, FakeServiceAccount] = {}
        self.page_size = page_size
        self._next_number = 100000000000
        self._next_id = 1

    # --- hooks: the demo does nothing here; tests/support/gcp.py counts and injects ---------

    def on_call(self, method: str, resource: str) -> None:
        """Each API call, once the project id, ``organizations/N`` or ``folders/F`` it is about
        is known (``method``: ``iam.GetServiceAccount``, ``rm.GetIamPolicy``, ``pa.<type>``, ...).
        Raising :class:`FakeApiError` fails the call."""

    def before_lookup(self, method: str) -> None:
        """An IAM Admin call, just before it looks its service account or key up."""

    def before_policy_write(self, holder: FakePolicyHolder) -> None:
        """A ``setIamPolicy`` call, under the lock, just before its etag is checked."""

    # --- seeding ---------------------------------------------------------------------------

    def add_project(
        self, project_id: str, parent: str = "organizations/1", state: str = "ACTIVE"
    ) -> FakeProject:
        with self.lock:
            self._next_number += 1
            project = FakeProject(project_id, str(self._next_number), parent, state)
            self.projects[project_id] = project
            self._ensure_organization(parent)
            return project

    def add_folder(self, name: str, parent: str, state: str = "ACTIVE") -> FakeFolder:
        with self.lock:
            folder = FakeFolder(name, parent, state)
            self.folders[name] = folder
            self._ensure_organization(parent)
            return folder

    def add_organization(self, name: str) -> FakeOrganization:
        if not name.startswith("organizations/"):
            raise ValueError(f"not an organization name: {name!r}")
        with self.lock:
            return self.organizations.setdefault(name, FakeOrganization(name))

    def _ensure_organization(self, parent: str) -> FakeOrganization | None:
        # An organization exists as soon as something lives directly under it.
        if not parent.startswith("organizations/"):
            return None
        return self.add_organization(parent)

    def policy_holder(self, resource: str) -> FakePolicyHolder:
        """A project (by id), ``organizations/N`` or ``folders/F``; KeyError if unknown."""
        with self.lock:
            if resource.startswith("organizations/"):
                return self.organizations[resource]
            if resource.startswith("folders/"):
                return self.folders[resource]
            return self.projects[resource]

    def bind(self, resource: str, role: str, member: str, condition: dict[str, str] | None = None) -> None:
        """Grant ``role`` to ``member`` on a project id, ``organizations/N`` or ``folders/F``."""
        with self.lock:
            p = self.policy_holder(resource)
            for b in p.bindings:
                if b["role"] == role and b.get("condition") == condition:
                    if member not in b["members"]:
                        b["members"].append(member)
                    break
            else:
                binding: dict[str, Any] = {"role": role, "members": [member]}
                if condition:
                    binding["condition"] = dict(condition)
                    p.version = 3
                p.bindings.append(binding)
            p.revision += 1

    def add_service_account(
        self,
        project: str,
        account_id: str,
        display_name: str = "",
        description: str = "",
        disabled: bool = False,
        last_auth: datetime | None = None,
    ) -> FakeServiceAccount:
        with self.lock:
            email = f"{account_id}@{project}.iam.gserviceaccount.com"
            if email in self.service_accounts:
                raise ValueError(f"service account {email} already exists")
            # Like Google: every account gets a uniqueId never given before, also one recreated
            # under the email of a deleted account.
            self._next_id += 1
            sa = FakeServiceAccount(
                project=project,
                email=email,
                unique_id=str(10**20 + self._next_id),
                display_name=display_name,
                description=description,
                disabled=disabled,
                last_auth=last_auth,
            )
            self.service_accounts[email] = sa
            # Google creates system-managed keys itself; the connector must filter them out.
            self.add_key(email, datetime(2020, 1, 1, tzinfo=UTC), system_managed=True)
            return sa

    def add_key(
        self,
        email: str,
        created: datetime,
        disabled: bool = False,
        expires: datetime | None = None,
        last_auth: datetime | None = None,
        system_managed: bool = False,
    ) -> FakeKey:
        with self.lock:
            sa = self.service_accounts[email]
            self._next_id += 1
            key_id = f"{self._next_id:040x}"
            key = FakeKey(
                name=f"{sa.name}/keys/{key_id}",
                key_id=key_id,
                created=created,
                expires=expires,
                disabled=disabled,
                system_managed=system_managed,
                last_auth=last_auth,
            )
            sa.keys[key_id] = key
            return key

    # --- lookups used by the servers -----------------------------------------------------

    def project(self, ref: str) -> FakeProject | None:
        """A project by id or number."""
        with self.lock:
            if ref in self.projects:
                return self.projects[ref]
            return next((p for p in self.projects.values() if p.number == ref), None)

    def find_service_account(self, project: str, ref: str) -> FakeServiceAccount | None:
        with self.lock:
            sa = self.service_accounts.get(ref.lower())
            if sa is None:
                sa = next((s for s in self.service_accounts.values() if s.unique_id == ref), None)
            if sa is None or project not in ("-", sa.project):
                return None
            return sa

    def find_key(self, name: str) -> tuple[FakeServiceAccount, FakeKey] | None:
        m = re.match(r"^projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)$", name)
        if not m:
            return None
        with self.lock:
            sa = self.find_service_account(m.group(1), m.group(2))
            if sa is None or m.group(3) not in sa.keys:
                return None
            return sa, sa.keys[m.group(3)]
