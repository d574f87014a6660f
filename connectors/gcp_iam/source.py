"""The read side of the Google Cloud IAM connector.

API calls (all read-only) and the permissions they need:

- Resource Manager ``projects.search`` (``resourcemanager.projects.get``) and
  ``folders.list`` (``resourcemanager.folders.list``): only with ``organization`` / ``folders``.
- Resource Manager ``projects.getIamPolicy`` (``resourcemanager.projects.getIamPolicy``),
  one per project, requested at policy version 3 so conditional bindings are visible.
- Only with ``organization`` / ``folders``: ``organizations.getIamPolicy``
  (``resourcemanager.organizations.getIamPolicy``) for the organization and
  ``folders.getIamPolicy`` (``resourcemanager.folders.getIamPolicy``) for every active folder
  scanned, sub-folders included. A role granted there is inherited by every project below, so
  a departed person bound only at the organization or a folder is still found. Each such
  policy is its own scope (``organizations/N`` / ``folders/F``); one that cannot be read is a
  failed scope, never an empty one.
- IAM Admin ``ListServiceAccounts`` (``iam.serviceAccounts.list``), paged, one per project,
  and ``ListServiceAccountKeys`` with key type USER_MANAGED (``iam.serviceAccountKeys.list``),
  one per service account. A service account's ``uniqueId`` is its ``Account.uid``; a binding
  principal's uid is its member's principal (``user:EMAIL``), its resource the scope.
- With ``key_last_auth`` only, in the detail pass: ``GetServiceAccount``
  (``iam.serviceAccounts.get``) and ``ListServiceAccountKeys`` again for each asked-about
  service account (the uid, state and keys of the account as it is now), and Policy Analyzer
  activity queries
  ``serviceAccountKeyLastAuthentication`` and ``serviceAccountLastAuthentication``
  (``policyanalyzer.serviceAccount[Key]LastAuthenticationActivities.query``), two per
  project that holds an account the core asked about.

The number of calls per project is independent of the number of people: one policy read,
one service-account page per 100 accounts, one key list per service account; and one policy
read per organization or folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.gcp_iam.clients import (
    ActivityQueryError,
    GcpClients,
    LazyClients,
    api_errors,
    bounded_retry,
    describe_error,
)
from connectors.gcp_iam.discovery import discover
from connectors.gcp_iam.settings import GcpSettings
from connectors.gcp_iam.translate import SYSTEM, policy_bindings, translate_policy
from connectors.gcp_iam.translate_service_accounts import (
    key_id_of,
    last_auth_by_key,
    last_auth_by_service_account,
    translate_key,
    translate_service_account,
)
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    EnrichmentFailure,
    Person,
    ScopeFailure,
    SourceData,
)

if TYPE_CHECKING:
    from google.cloud.iam_admin_v1 import ListServiceAccountKeysResponse

KEY_ACTIVITY = "serviceAccountKeyLastAuthentication"
SA_ACTIVITY = "serviceAccountLastAuthentication"


@dataclass
class _ProjectResult:
    accounts: list[Account] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)


class GcpIamSource:
    """Reads IAM bindings, service accounts and their user-managed keys from Google Cloud projects,
    and the IAM bindings of the organization and folders they are scanned under.

    Projects (and organization/folder policies) are scanned concurrently (at most
    ``max_workers`` at a time). A project or organization/folder policy that fails
    (PermissionDenied, quota, unreachable) becomes a ``ScopeFailure``; if every project fails,
    or the project list itself cannot be read, :class:`SourceError` is raised.
    """

    system = SYSTEM

    def __init__(
        self,
        config: GcpSettings,
        clients: GcpClients | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._clients = LazyClients(config, clients)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._retry = bounded_retry(config.timeout)

    # --- clients -------------------------------------------------------------------------

    @property
    def clients(self) -> GcpClients:
        try:
            return self._clients.get()
        except api_errors() as exc:
            raise SourceError(
                f"{self.name}: cannot create Google Cloud clients ({describe_error(exc)}); "
                "set Application Default Credentials or iam_endpoint/resource_manager_endpoint"
            ) from exc

    # --- projects ------------------------------------------------------------------------

    def projects(self) -> list[str]:
        """Configured projects plus every active project under ``organization`` / ``folders``."""
        return self._discover()[0]

    def _discover(self) -> tuple[list[str], list[str]]:
        """(projects, organization and folders whose IAM policies are read): see
        :func:`~connectors.gcp_iam.discovery.discover`."""
        return discover(self.config, lambda: self.clients)

    # --- bulk pass -----------------------------------------------------------------------

    def collect(self) -> SourceData:
        projects, hierarchy = self._discover()
        return self._scan(projects, hierarchy, wanted=None)

    def collect_for(self, person: Person) -> SourceData:
        """Only the bindings and owned service accounts of one person (the HR webhook path).

        The same calls as :meth:`collect` (the APIs cannot filter by member), but the output
        keeps only ``user:`` members (of project, organization and folder policies) and
        service accounts whose owner is one of the person's email addresses.
        """
        wanted = {e.lower() for e in (person.email, *person.aliases) if e and "@" in e}
        projects, hierarchy = self._discover()
        data = self._scan(projects, hierarchy, wanted=wanted)
        if not self.config.key_last_auth:
            return data
        services = [a for a in data.accounts if a.kind is AccountKind.SERVICE]
        extra = self.detail(services)
        replaced = {a.account_id for a in extra.accounts}
        return SourceData(
            accounts=tuple(a for a in data.accounts if a.account_id not in replaced) + extra.accounts,
            credentials=tuple(c for c in data.credentials if c.account_id not in replaced)
            + extra.credentials,
            failed_scopes=data.failed_scopes,
            warnings=data.warnings + extra.warnings,
            scopes=data.scopes,
            enrichment_failures=extra.enrichment_failures,
        )

    def _scan(self, projects: Sequence[str], hierarchy: Sequence[str], wanted: set[str] | None) -> SourceData:
        observed_at = self._clock()
        results: dict[str, _ProjectResult] = {}
        failures: list[ScopeFailure] = []
        scopes = [*projects, *hierarchy]
        workers = max(1, min(self.config.max_workers, len(scopes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"gcp-{self.name}") as pool:
            futures = {p: pool.submit(self._scan_project, p, wanted, observed_at) for p in projects}
            futures.update(
                {n: pool.submit(self._scan_hierarchy_policy, n, wanted, observed_at) for n in hierarchy}
            )
            for scope, future in futures.items():
                try:
                    results[scope] = future.result()
                except _ProjectFailed as exc:
                    failures.append(ScopeFailure(scope=scope, error=str(exc)))
        project_set = set(projects)
        failed_projects = [f for f in failures if f.scope in project_set]
        if projects and len(failed_projects) == len(projects):
            detail = "; ".join(f"{f.scope}: {f.error}" for f in failed_projects[:3])
            raise SourceError(f"{self.name}: every project failed ({detail})")
        accounts: list[Account] = []
        credentials: list[Credential] = []
        for scope in scopes:
            if scope in results:
                accounts.extend(results[scope].accounts)
                credentials.extend(results[scope].credentials)
        return SourceData(
            accounts=tuple(accounts),
            credentials=tuple(credentials),
            failed_scopes=tuple(failures),
            scopes=tuple(scopes),
        )

    def _scan_hierarchy_policy(
        self, resource: str, wanted: set[str] | None, observed_at: datetime
    ) -> _ProjectResult:
        """The IAM policy of one organization or folder: one ``getIamPolicy`` call."""
        clients = self.clients
        kind = "organizations" if resource.startswith("organizations/") else "folders"
        client = clients.organizations if kind == "organizations" else clients.folders
        if client is None:
            raise _ProjectFailed(f"getIamPolicy: no Resource Manager {kind} client configured")
        try:
            policy = client.get_iam_policy(
                request={"resource": resource, "options": {"requested_policy_version": 3}},
                retry=self._retry,
                timeout=self.config.timeout,
            )
        except api_errors() as exc:
            raise _ProjectFailed(f"getIamPolicy: {describe_error(exc)}") from exc
        accounts, credentials = translate_policy(
            self.name, resource, policy_bindings(policy), observed_at, wanted=wanted
        )
        return _ProjectResult(accounts=accounts, credentials=credentials)

    def _scan_project(self, project: str, wanted: set[str] | None, observed_at: datetime) -> _ProjectResult:
        clients = self.clients
        result = _ProjectResult()
        step = "getIamPolicy"
        try:
            policy = clients.projects.get_iam_policy(
                request={"resource": f"projects/{project}", "options": {"requested_policy_version": 3}},
                retry=self._retry,
                timeout=self.config.timeout,
            )
            accounts, credentials = translate_policy(
                self.name, project, policy_bindings(policy), observed_at, wanted=wanted
            )
            result.accounts.extend(accounts)
            result.credentials.extend(credentials)
            step = "ListServiceAccounts"
            owners = self.config.owners or {}
            pager = clients.iam.list_service_accounts(
                request={"name": f"projects/{project}", "page_size": 100},
                retry=self._retry,
                timeout=self.config.timeout,
            )
            for sa in pager:
                account, account_cred = translate_service_account(self.name, project, sa, owners, observed_at)
                if wanted is not None and not wanted.intersection(account.attribute_values("owner")):
                    continue
                step = f"ListServiceAccountKeys {sa.email}"
                keys = self._user_managed_keys(clients, sa.name)
                result.accounts.append(account)
                result.credentials.append(account_cred)
                result.credentials.extend(
                    translate_key(self.name, project, sa.email, k, observed_at) for k in keys.keys
                )
                step = "ListServiceAccounts"
        except api_errors() as exc:
            raise _ProjectFailed(f"{step}: {describe_error(exc)}") from exc
        return result

    def _user_managed_keys(self, clients: GcpClients, name: str) -> ListServiceAccountKeysResponse:
        """``ListServiceAccountKeys`` of one service account, user-managed keys only."""
        from google.cloud import iam_admin_v1

        keys: ListServiceAccountKeysResponse = clients.iam.list_service_account_keys(
            request={
                "name": name,
                "key_types": [iam_admin_v1.ListServiceAccountKeysRequest.KeyType.USER_MANAGED],
            },
            retry=self._retry,
            timeout=self.config.timeout,
        )
        return keys

    # --- detail pass ---------------------------------------------------------------------

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        """Last-authentication evidence for the service accounts the core asks about.

        Only with ``key_last_auth``; otherwise the bulk pass already said everything and this
        returns ``SourceData()``. For each asked-about service account the account
        (``GetServiceAccount``: its ``uniqueId``, state, owners) and its keys are re-read and the
        Policy Analyzer activities of its project attached as ``last_used_at``; the returned
        account and credentials are the complete set for that account as it is now.

        The evidence is an optional enrichment: when the Policy Analyzer is unavailable (API
        disabled, permission missing, an error or a timeout) it is left out and the project is
        reported in ``enrichment_failures``; so is an account whose keys cannot be re-read (it
        is left out, its bulk credentials stay). The engine then keeps the last known values and
        resolves nothing for lack of them.
        """
        if not self.config.key_last_auth:
            return SourceData()
        services = [
            a
            for a in accounts
            if a.kind is AccountKind.SERVICE
            and a.source == self.name
            and "@" in a.account_id
            and not a.account_id.startswith("projects/")
        ]
        if not services:
            return SourceData()
        observed_at = self._clock()
        by_project: dict[str, list[Account]] = {}
        for account in services:
            by_project.setdefault(account.scope, []).append(account)
        workers = max(1, min(self.config.max_workers, len(by_project)))
        out_accounts: list[Account] = []
        out_credentials: list[Credential] = []
        unenriched: list[EnrichmentFailure] = []
        # Projects in parallel, as in the bulk pass: the cost grows with the leavers' projects.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"gcp-{self.name}-detail") as pool:
            futures = [
                pool.submit(self._detail_project, project, members, observed_at)
                for project, members in by_project.items()
            ]
            for future in futures:
                accounts_part, credentials_part, failures_part = future.result()
                out_accounts.extend(accounts_part)
                out_credentials.extend(credentials_part)
                unenriched.extend(failures_part)
        return SourceData(
            accounts=tuple(out_accounts),
            credentials=tuple(out_credentials),
            enrichment_failures=tuple(unenriched),
        )

    def _detail_project(
        self, project: str, services: Sequence[Account], observed_at: datetime
    ) -> tuple[list[Account], list[Credential], list[EnrichmentFailure]]:
        """Keys (re-read) and last authentication of some service accounts of one project."""
        clients = self.clients
        unenriched: list[EnrichmentFailure] = []
        key_auth, sa_auth = self._activities(clients, project, unenriched)
        out_accounts: list[Account] = []
        out_credentials: list[Credential] = []
        owners = self.config.owners or {}
        for account in services:
            name = f"projects/{project}/serviceAccounts/{account.account_id}"
            try:
                # Re-read the account itself: its uniqueId (Account.uid) must be the one of the
                # account whose keys are listed next, even if it was recreated since the bulk pass.
                sa = clients.iam.get_service_account(
                    request={"name": name}, retry=self._retry, timeout=self.config.timeout
                )
                keys = self._user_managed_keys(clients, name)
            except api_errors() as exc:
                unenriched.append(
                    EnrichmentFailure(
                        project,
                        f"cannot re-read {account.account_id} and its keys for their last "
                        f"authentication: {describe_error(exc)}",
                    )
                )
                continue
            refs = [account.account_id.lower(), str(sa.unique_id)]
            sa_last = max((sa_auth[r] for r in refs if r in sa_auth), default=None)
            refined, account_cred = translate_service_account(
                self.name, project, sa, owners, observed_at, last_auth=sa_last or account.last_login_at
            )
            out_accounts.append(refined)
            out_credentials.append(account_cred)
            out_credentials.extend(
                translate_key(
                    self.name,
                    project,
                    account.account_id,
                    k,
                    observed_at,
                    last_auth=key_auth.get(key_id_of(k.name)),
                )
                for k in keys.keys
            )
        return out_accounts, out_credentials, unenriched

    def _activities(
        self, clients: GcpClients, project: str, unenriched: list[EnrichmentFailure]
    ) -> tuple[dict[str, datetime], dict[str, datetime]]:
        """Key and service-account last authentication for one project; empty, and the project
        added to ``unenriched``, when they cannot be read."""
        activity = clients.activity
        if activity is None:
            unenriched.append(
                EnrichmentFailure(
                    project,
                    "last-authentication evidence unavailable: key_last_auth is on but no Policy "
                    "Analyzer client is configured",
                )
            )
            return {}, {}
        errors: tuple[type[BaseException], ...] = (ActivityQueryError, *api_errors())
        try:
            keys = last_auth_by_key(activity.query(project, KEY_ACTIVITY))
            sas = last_auth_by_service_account(activity.query(project, SA_ACTIVITY))
        except errors as exc:
            hint = ""
            if isinstance(exc, ActivityQueryError) and exc.status in (403, 404):
                hint = (
                    " (enable policyanalyzer.googleapis.com and grant "
                    "roles/policyanalyzer.activityAnalysisViewer)"
                )
            unenriched.append(
                EnrichmentFailure(
                    project,
                    "last-authentication evidence unavailable, Policy Analyzer query failed: "
                    f"{describe_error(exc)}{hint}",
                )
            )
            return {}, {}
        return keys, sas

    def close(self) -> None:
        self._clients.close()


class _ProjectFailed(Exception):
    """One scope (project, organization or folder policy) could not be read; carries the step
    and the API's message."""
