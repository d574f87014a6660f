"""The ``aws_iam`` account source: IAM users and every credential they hold, in two passes.

Bulk pass (:meth:`AwsIamSource.collect`), per AWS account, a fixed number of calls whatever
the headcount:

- ``iam:GenerateCredentialReport`` / ``iam:GetCredentialReport`` (poll until ready): password,
  MFA, both access keys' and certificates' status and last use for every user in one CSV.
  The report may be up to 4 hours old; its generation time is recorded as
  ``Credential.observed_at``.
- ``iam:GetAccountAuthorizationDetails`` (``Filter=["User"]``, paginated): every user with
  tags, groups and attached/inline policy names. Read while the report is generated (AWS can
  take seconds to minutes for a large account), so the slower of the two sets the pace.

Detail pass (:meth:`AwsIamSource.detail`), only for the users the core asks about (or all,
with ``full_detail``), on a bounded thread pool: ``iam:ListAccessKeys`` +
``iam:GetAccessKeyLastUsed`` per key (real key ids and exact last use),
``iam:ListSSHPublicKeys``, ``iam:ListServiceSpecificCredentials``, and
``iam:ListSigningCertificates`` / ``iam:ListMFADevices`` only where the report shows one.
Any per-user call that still fails after botocore's retries makes that AWS account a
``ScopeFailure`` of the detail result, with an error naming the call, the user and (for a
call the endpoint does not implement) the option that turns the credential kind off; the
user's data is not returned at all, so nothing the core stored for it is replaced.

Every account carries the user's ``UserId`` as ``Account.uid`` (bulk pass, detail pass and
``collect_for``), read from ``GetAccountAuthorizationDetails`` or ``GetUser``.

Many accounts: ``accounts = [...]`` or ``organization = true`` (``organizations:ListAccounts``)
with ``sts:AssumeRole`` into each, scanned concurrently. One account failing marks that scope
failed; the others still report. Throttling is retried by botocore (standard/adaptive mode);
a call that still fails fails its account, it never reads as "no credentials".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connectors.aws_iam import translate as tr
from connectors.aws_iam.clients import Client, ClientProvider, items, pages
from connectors.aws_iam.errors import AwsCallError, describe, error_code, explain_call, unless_missing
from connectors.aws_iam.payloads import (
    CredentialReport,
    ReportRow,
    UserDetail,
    as_aware,
    parse_credential_report,
    parse_user_detail,
    parse_user_details,
)
from connectors.aws_iam.settings import AwsSettings
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import Account, Credential, Person, ScopeFailure, SourceData

log = logging.getLogger(__name__)

# Error codes of GetCredentialReport that mean "not ready yet, generate and poll again".
_REPORT_NOT_READY = frozenset({"ReportInProgress", "ReportNotPresent", "ReportExpired"})


@dataclass
class _ScopeScan:
    """What the bulk pass learned about one AWS account; the detail pass reuses it."""

    scope: str
    users: dict[str, UserDetail]
    report: CredentialReport | None
    read_at: datetime
    accounts: list[Account] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class AwsIamSource:
    """Reads IAM users and credentials from one or many AWS accounts.

    Permissions (read path): iam:GenerateCredentialReport, iam:GetCredentialReport,
    iam:GetAccountAuthorizationDetails, iam:ListAccessKeys, iam:GetAccessKeyLastUsed,
    iam:ListSSHPublicKeys, iam:ListServiceSpecificCredentials, iam:ListSigningCertificates,
    iam:ListMFADevices, iam:GetUser, iam:GetLoginProfile, iam:ListGroupsForUser,
    iam:ListUserPolicies (targeted path), sts:GetCallerIdentity, and for many accounts
    sts:AssumeRole and organizations:ListAccounts.
    """

    system = tr.SYSTEM

    def __init__(
        self,
        settings: AwsSettings,
        provider: ClientProvider,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.provider = provider
        self._clock = clock
        self._sleep = sleep
        self._scans: dict[str, _ScopeScan] = {}

    # --- scopes -------------------------------------------------------------------------

    def scopes(self) -> list[str]:
        """The AWS accounts to scan. Failing to list them is a total failure of the source."""
        try:
            if self.settings.organization:
                org = self.provider.organizations()
                found: list[str] = []
                token: str | None = None
                while True:
                    page = org.list_accounts(**({"NextToken": token} if token else {}))
                    for account in page.get("Accounts") or ():
                        # Suspended or closing accounts cannot be assumed into; State replaces Status.
                        if (account.get("State") or account.get("Status")) == "ACTIVE":
                            found.append(str(account["Id"]))
                    token = page.get("NextToken")
                    if not token:
                        break
                if not found:
                    raise SourceError("organizations:ListAccounts returned no ACTIVE account")
                return found
            if self.settings.accounts:
                return list(self.settings.accounts)
            return [self.provider.home_account()]
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"{self.name}: cannot list the AWS accounts to scan: {describe(exc)}") from exc

    # --- bulk pass ----------------------------------------------------------------------

    def collect(self) -> SourceData:
        scopes = self.scopes()
        results = self._per_scope(scopes, self._scan_scope)
        failures: list[ScopeFailure] = []
        scans: list[_ScopeScan] = []
        for scope, result in zip(scopes, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("aws account %s failed: %s", scope, describe(result))
                failures.append(ScopeFailure(scope=scope, error=describe(result)))
            else:
                scans.append(result)
        if not scans:
            detail = "; ".join(f"{f.scope}: {f.error}" for f in failures)
            raise SourceError(f"{self.name}: every AWS account failed ({detail})")
        for scan in scans:
            self._scans[scan.scope] = scan
        accounts = [a for s in scans for a in s.accounts]
        credentials = [c for s in scans for c in s.credentials]
        warnings = [w for s in scans for w in s.warnings]
        if self.settings.full_detail:
            detailed = self.detail(accounts)
            replaced = {a.account_id for a in detailed.accounts}
            accounts = [a for a in accounts if a.account_id not in replaced] + list(detailed.accounts)
            credentials = [c for c in credentials if c.account_id not in replaced] + list(
                detailed.credentials
            )
            failures.extend(detailed.failed_scopes)
            warnings.extend(detailed.warnings)
        return SourceData(
            accounts=tuple(accounts),
            credentials=tuple(credentials),
            failed_scopes=tuple(failures),
            warnings=tuple(warnings),
            scopes=tuple(scopes),
        )

    def _per_scope(
        self, scopes: Sequence[str], work: Callable[[str], _ScopeScan]
    ) -> list[_ScopeScan | BaseException]:
        def guarded(scope: str) -> _ScopeScan | BaseException:
            try:
                return work(scope)
            # One account's failure (denied, throttled past retries, malformed data) must not
            # stop the others: it becomes that scope's failure.
            except Exception as exc:
                return exc

        if len(scopes) == 1:
            return [guarded(scopes[0])]
        with ThreadPoolExecutor(max_workers=min(self.settings.account_workers, len(scopes))) as pool:
            return list(pool.map(guarded, scopes))

    def _scan_scope(self, scope: str) -> _ScopeScan:
        iam = self.provider.iam_for(scope)
        read_at = self._clock()
        # The report is generated and polled on a second thread while this one pages through
        # the users (botocore clients are thread-safe); a failure of either fails the scope.
        with ThreadPoolExecutor(max_workers=1) as background:
            report_future = background.submit(self.read_report, iam)
            users = parse_user_details(pages(iam.get_account_authorization_details, Filter=["User"]))
            report = report_future.result()
        scan = _ScopeScan(scope=scope, users=users, report=report, read_at=read_at)
        missing: list[str] = []
        for user in users.values():
            row = report.row_for(user)
            account_id = tr.account_id_of(scope, user.name, user.arn)
            creds: list[Credential] = []
            if row is None:
                missing.append(user.name)
            else:
                creds.extend(tr.report_credentials(self.name, scope, account_id, row, report.generated_at))
            creds.extend(tr.group_credentials(self.name, scope, account_id, user, read_at))
            last_login = row.password_last_used if row else None
            if self.settings.include_inline_deny:
                creds.append(tr.session_credential(self.name, scope, account_id, user, read_at, last_login))
            scan.accounts.append(
                tr.make_account(self.name, scope, user, self.settings, creds if row else None, last_login)
            )
            scan.credentials.extend(creds)
        if missing:
            scan.warnings.append(
                f"account {scope}: {len(missing)} user(s) are newer than the credential report of "
                f"{report.generated_at.isoformat()} ({', '.join(sorted(missing)[:5])}"
                f"{', ...' if len(missing) > 5 else ''}); their credentials are read in the detail pass"
            )
        return scan

    def read_report(self, iam: Client) -> CredentialReport:
        """Generate the credential report and poll until it can be read (bounded by report_timeout)."""
        deadline = self._clock() + self.settings.report_timeout
        interval = 0.5
        while True:
            iam.generate_credential_report()
            try:
                response = iam.get_credential_report()
            except Exception as exc:
                if error_code(exc) not in _REPORT_NOT_READY:
                    raise
                if self._clock() + timedelta(seconds=interval) > deadline:
                    raise SourceError(
                        f"credential report not ready after {self.settings.report_timeout}: {describe(exc)}"
                    ) from exc
                self._sleep(interval)
                interval = min(interval * 2, 5.0)
                continue
            generated = response.get("GeneratedTime")
            generated_at = as_aware(generated) if isinstance(generated, datetime) else self._clock()
            return parse_credential_report(response["Content"], generated_at)

    # --- detail pass --------------------------------------------------------------------

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        mine = [a for a in accounts if a.source == self.name and a.system == self.system]
        if not mine:
            return SourceData()
        by_scope: dict[str, list[Account]] = {}
        for account in mine:
            by_scope.setdefault(account.scope, []).append(account)
        failures: dict[str, list[str]] = {}
        tasks: list[tuple[str, Client, str]] = []
        for scope, scoped in by_scope.items():
            try:
                iam = self.provider.iam_for(scope)
            except Exception as exc:
                failures.setdefault(scope, []).append(describe(exc))
                continue
            tasks.extend((scope, iam, a.username) for a in scoped)

        def run(task: tuple[str, Client, str]) -> tuple[Account, list[Credential]] | BaseException:
            scope, iam, username = task
            try:
                return self.detail_user(iam, scope, username)
            # A failed user fails its scope and returns nothing: never an empty list of keys, and
            # none of that user's credentials are replaced.
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(max_workers=self.settings.max_workers) as pool:
            results = list(pool.map(run, tasks))
        out_accounts: list[Account] = []
        out_credentials: list[Credential] = []
        for (scope, _iam, username), result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException):
                # An AwsCallError already names the call and the user.
                why = (
                    str(result)
                    if isinstance(result, AwsCallError)
                    else f"user {username!r}: {describe(result)}"
                )
                failures.setdefault(scope, []).append(f"detail pass: {why}")
            else:
                out_accounts.append(result[0])
                out_credentials.extend(result[1])
        return SourceData(
            accounts=tuple(out_accounts),
            credentials=tuple(out_credentials),
            failed_scopes=tuple(ScopeFailure(s, "; ".join(e)) for s, e in failures.items()),
            scopes=tuple(by_scope),
        )

    @contextmanager
    def _calling(self, api: str, username: str, scope: str) -> Iterator[None]:
        """Turn any failure of one IAM call (after botocore's retries) into an AwsCallError
        naming the call, the user, the account and the option that avoids the call."""
        try:
            yield
        except AwsCallError:
            raise
        except Exception as exc:
            raise AwsCallError(explain_call(api, username, exc, source=self.name, scope=scope)) from exc

    def detail_user(self, iam: Client, scope: str, username: str) -> tuple[Account, list[Credential]]:
        """Every credential of one user, with real ids. Uses the bulk pass's data when it has it.

        Calls: iam:ListAccessKeys, iam:GetAccessKeyLastUsed (per key), iam:ListSSHPublicKeys
        (unless ``ssh_public_keys = false``), iam:ListServiceSpecificCredentials (unless
        ``service_specific_credentials = false``), iam:ListSigningCertificates / iam:ListMFADevices
        (where the report shows one, or without a report row), iam:GetLoginProfile (without a
        report row), and :meth:`fetch_user` for a user the bulk pass did not see. Any failure
        raises :class:`AwsCallError`: no partial result for the user.
        """
        scan = self._scans.get(scope)
        user = scan.users.get(username) if scan else None
        if user is None:
            user = self.fetch_user(iam, username, scope)
        return self.read_user(iam, scope, user, scan.report if scan else None, scan.read_at if scan else None)

    def read_user(
        self,
        iam: Client,
        scope: str,
        user: UserDetail,
        report: CredentialReport | None,
        read_at: datetime | None,
    ) -> tuple[Account, list[Credential]]:
        """Every credential of ``user`` (see :meth:`detail_user`), trusting ``report`` (and the
        ``user`` read at ``read_at``) for what they show; without a report every kind is listed."""
        username = user.name
        row: ReportRow | None = report.row_for(user) if report else None
        now = self._clock()
        account_id = tr.account_id_of(scope, user.name, user.arn)
        creds: list[Credential] = []
        with self._calling("ListAccessKeys", username, scope):
            keys = items(iam.list_access_keys, "AccessKeyMetadata", UserName=username)
        for key in keys:
            with self._calling("GetAccessKeyLastUsed", username, scope):
                last = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get("AccessKeyLastUsed")
            creds.append(tr.access_key_credential(self.name, scope, account_id, key, last, now))
        if self.settings.ssh_public_keys:
            with self._calling("ListSSHPublicKeys", username, scope):
                ssh_keys = items(iam.list_ssh_public_keys, "SSHPublicKeys", UserName=username)
            for key in ssh_keys:
                creds.append(tr.ssh_key_credential(self.name, scope, account_id, key, now))
        if self.settings.service_specific_credentials:
            with self._calling("ListServiceSpecificCredentials", username, scope):
                found = items(
                    iam.list_service_specific_credentials, "ServiceSpecificCredentials", UserName=username
                )
            for cred in found:
                creds.append(tr.service_credential(self.name, scope, account_id, cred, now))
        if row is None or row.has_signing_certificate:
            with self._calling("ListSigningCertificates", username, scope):
                certs = items(iam.list_signing_certificates, "Certificates", UserName=username)
            for cert in certs:
                creds.append(tr.signing_certificate_credential(self.name, scope, account_id, cert, now))
        if row is None or row.mfa_active:
            with self._calling("ListMFADevices", username, scope):
                devices = items(iam.list_mfa_devices, "MFADevices", UserName=username)
            for device in devices:
                creds.append(tr.mfa_credential(self.name, scope, account_id, device, now))
        last_login: datetime | None = None
        if row is not None and report is not None:
            last_login = row.password_last_used
            if row.password_enabled:
                creds.append(tr.password_credential(self.name, scope, account_id, row, report.generated_at))
        else:
            with self._calling("GetLoginProfile", username, scope):
                profile = unless_missing(iam.get_login_profile, UserName=username)
            if profile is not None:
                creds.append(tr.login_profile_credential(self.name, scope, account_id, profile, now))
        creds.extend(tr.group_credentials(self.name, scope, account_id, user, read_at or now))
        if self.settings.include_inline_deny:
            creds.append(tr.session_credential(self.name, scope, account_id, user, now, last_login))
        account = tr.make_account(self.name, scope, user, self.settings, creds, last_login)
        return account, creds

    def fetch_user(self, iam: Client, username: str, scope: str = "") -> UserDetail:
        """One user without the bulk pass: GetUser, ListGroupsForUser, ListUserPolicies."""
        with self._calling("GetUser", username, scope):
            raw = dict(iam.get_user(UserName=username)["User"])
        with self._calling("ListGroupsForUser", username, scope):
            raw["GroupList"] = [
                g["GroupName"] for g in items(iam.list_groups_for_user, "Groups", UserName=username)
            ]
        with self._calling("ListUserPolicies", username, scope):
            raw["UserPolicyList"] = [
                {"PolicyName": p} for p in items(iam.list_user_policies, "PolicyNames", UserName=username)
            ]
        return parse_user_detail(raw)

    # --- targeted path (HR webhook) -------------------------------------------------------

    def collect_for(self, person: Person) -> SourceData:
        """Only the IAM users that may belong to ``person``, read in full.

        Reads ``GetAccountAuthorizationDetails`` per account (no credential report) and keeps
        users whose name or owner hints equal one of the person's identifiers. This is a
        generous pre-filter; the core's matcher still decides who owns what.
        """
        wanted = {person.employee_id.lower(), *(a.lower() for a in person.aliases)}
        if person.email:
            wanted.add(person.email.lower())
            wanted.add(person.email.split("@", 1)[0].lower())
        wanted.discard("")
        scopes = self.scopes()

        def scan(scope: str) -> _ScopeScan:
            iam = self.provider.iam_for(scope)
            users = parse_user_details(pages(iam.get_account_authorization_details, Filter=["User"]))
            result = _ScopeScan(scope=scope, users={}, report=None, read_at=self._clock())
            for user in users.values():
                attributes, emails = tr.owner_attributes(user, self.settings)
                values = {user.name.lower(), *emails, *(v.lower() for _, v in attributes)}
                if values & wanted:
                    # As read now, never the last full read's user or report (a long-lived
                    # instance keeps them): a password, group or re-creation since must show.
                    account, creds = self.read_user(iam, scope, user, None, result.read_at)
                    result.accounts.append(account)
                    result.credentials.extend(creds)
            return result

        results = self._per_scope(scopes, scan)
        failures = [
            ScopeFailure(scope, describe(r))
            for scope, r in zip(scopes, results, strict=True)
            if isinstance(r, BaseException)
        ]
        scans = [r for r in results if not isinstance(r, BaseException)]
        if not scans:
            raise SourceError(
                f"{self.name}: every AWS account failed ({'; '.join(f.error for f in failures)})"
            )
        return SourceData(
            accounts=tuple(a for s in scans for a in s.accounts),
            credentials=tuple(c for s in scans for c in s.credentials),
            failed_scopes=tuple(failures),
            scopes=tuple(scopes),
        )
