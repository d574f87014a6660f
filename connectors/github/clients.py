"""Where the GitHub client comes from (an injected one, or githubkit built on first use) and the
call helpers the source, the exposure reader and the revoker share: rate limits, retries, ``Link``
pagination and errors that name the call.

Every REST call goes through :meth:`GitHubApi.call`, which

- waits (with the injected sleeper, so tests never sleep) when GitHub says so: a 403/429 with
  ``Retry-After`` (secondary limit), a 403/429 with ``X-RateLimit-Remaining: 0`` (primary limit,
  until ``X-RateLimit-Reset``), a 403 whose message says "secondary rate limit" without either
  header (one minute, doubling), and before the next call once a response showed the primary
  budget spent; 5xx answers and dropped connections are retried with a short backoff;
- bounds every wait by ``max_wait`` and the retries by ``max_retries``: a limit that resets later
  than that fails the call at once (:class:`GitHubCallError`, naming the call and when it resets),
  so a throttled list is a failed scope, never an empty list;
- parses the answer with githubkit's typed models (generated from GitHub's OpenAPI description of
  Enterprise Cloud, a superset of api.github.com's): an answer GitHub would not send fails the call.

Pagination follows the ``Link: <...>; rel="next"`` header (:meth:`GitHubApi.pages`), never page
counting: GitHub decides what the next page is.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from connectors.github.settings import GitHubSettings
from offboard_audit.core.errors import OffboardError, SourceError

if TYPE_CHECKING:
    from githubkit import GitHub
    from githubkit_schemas.ghec_v2026_03_10.rest import RestNamespace

T = TypeVar("T")

# The REST description the typed models come from: Enterprise Cloud's (it has the SAML credential
# authorizations and the audit log, which api.github.com's lacks; the rest is the same).
REST_VERSION = "ghec-2026-03-10"

_NEXT = re.compile(r'<([^<>]+)>;\s*rel="next"')
# GitHub: "wait at least one minute" after a secondary limit that names no time, then longer.
_SECONDARY_FLOOR = 60.0


class GitHubCallError(OffboardError):
    """One GitHub call failed for good (after the waits and retries it was allowed).

    ``status`` is the HTTP status (0 when no answer came back); the message names the call.
    """

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GitHubClients:
    """What tests and the demo inject as ``ctx.clients[<source name>]``.

    ``github``: a ready ``githubkit.GitHub`` (its ``base_url`` pointing at a fake, say).
    ``sleep`` / ``clock``: the waits and the time used for rate-limit resets (tests pass a
    recorder and a fixed clock, so nothing really sleeps). A bare ``GitHub`` may be injected
    instead.
    """

    github: Any
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], datetime] | None = None

    @staticmethod
    def coerce(value: Any) -> GitHubClients | None:
        if value is None or isinstance(value, GitHubClients):
            return value
        from githubkit import GitHub

        if isinstance(value, GitHub):
            return GitHubClients(github=value)
        raise TypeError(
            f"cannot use {type(value).__name__} as an injected GitHub client (want GitHubClients or githubkit.GitHub)"
        )


def build_github(settings: GitHubSettings, env: dict[str, str] | Any) -> GitHub[Any]:
    """A githubkit client from the settings: token auth (``token_env``) or GitHub App auth.

    githubkit's own retries are off (its waits call ``time.sleep`` and are unbounded); the
    :class:`GitHubApi` wrapper retries instead, with bounded, injectable waits.
    """
    from githubkit import AppInstallationAuthStrategy, GitHub
    from githubkit.cache import MemCacheStrategy

    timeout = settings.timeout.total_seconds()
    if settings.app_id is not None:
        assert settings.private_key_env is not None and settings.installation_id is not None
        key = env.get(settings.private_key_env)
        if not key:
            raise SourceError(f"{settings.name}: environment variable {settings.private_key_env} is not set")
        auth = AppInstallationAuthStrategy(settings.app_id, key, settings.installation_id)
        # A cache of this client's own: githubkit's default is one per process, keyed by app id
        # and installation id only, so another source with the same ids (a GitHub Enterprise
        # Server's app beside github.com's) would be sent this server's installation token.
        return GitHub(
            auth,
            base_url=settings.api_url,
            auto_retry=False,
            http_cache=False,
            timeout=timeout,
            cache_strategy=MemCacheStrategy(),
        )
    if not settings.token_env:
        raise SourceError(f"{settings.name}: no token_env and no GitHub App keys configured")
    token = env.get(settings.token_env)
    if not token:
        raise SourceError(f"{settings.name}: environment variable {settings.token_env} is not set")
    return GitHub(token, base_url=settings.api_url, auto_retry=False, http_cache=False, timeout=timeout)


class GitHubApi:
    """One organisation's API: the githubkit client plus bounded rate-limit waits and retries.

    Thread-safe: the deploy-key and audit-log reads run on a small pool and share one budget.
    """

    def __init__(
        self,
        settings: GitHubSettings,
        make: Callable[[], Any],
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._make = make
        self._github: Any = None
        self._sleep = sleep or time.sleep
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._local = threading.local()
        # When the primary budget (X-RateLimit-Remaining: 0) comes back, as last seen.
        self._blocked_until: datetime | None = None

    @classmethod
    def of(cls, settings: GitHubSettings, injected: GitHubClients | None, env: Any) -> GitHubApi:
        """The API from an injected client, or one built on first use from the settings."""
        if injected is not None:
            gh = injected.github
            return cls(settings, lambda: gh, injected.sleep, injected.clock)
        return cls(settings, lambda: build_github(settings, env))

    @property
    def github(self) -> Any:
        with self._lock:
            if self._github is None:
                self._github = self._make()
            return self._github

    @property
    def rest(self) -> RestNamespace:
        return self.github.rest(REST_VERSION)  # type: ignore[no-any-return]

    def now(self) -> datetime:
        return self._clock()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one HTTP client (and its keep-alive connections) for the calls made inside, on this
        thread. githubkit otherwise builds a client per request: a new connection (and TLS
        handshake) each time. Re-entrant; a session the caller opened already is used as is."""
        depth = getattr(self._local, "depth", 0)
        entered = False
        if depth == 0:
            try:
                self.github.__enter__()
                entered = True
            except RuntimeError:
                entered = False  # the caller holds a client on this thread already
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if entered:
                self.github.__exit__(None, None, None)

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T | GitHubCallError]:
        """``fn`` over ``items`` on ``workers`` threads, each with one session for its share; a
        failed call is returned in its item's place (as its :class:`GitHubCallError`)."""
        if not items:
            return []
        n = max(1, min(self.settings.workers, len(items)))
        shares = [list(range(i, len(items), n)) for i in range(n)]
        out: list[T | GitHubCallError] = [GitHubCallError("not run")] * len(items)

        def run(share: list[int]) -> None:
            with self.session():
                for i in share:
                    try:
                        out[i] = fn(items[i])
                    except GitHubCallError as exc:
                        out[i] = exc

        with ThreadPoolExecutor(max_workers=n) as pool:
            for f in [pool.submit(run, share) for share in shares]:
                f.result()
        return out

    # --- one call --------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one request) with the waits and retries described in the module docstring.
        ``what`` names the call in errors (``GET /orgs/acme/members``)."""
        from githubkit.exception import GraphQLFailed, RequestError, RequestFailed

        attempt = 0
        while True:
            self._wait_for_budget(what)
            try:
                result = fn()
            except RequestFailed as exc:
                response = exc.response
                status = response.status_code
                wait = self._rate_limit_wait(response, attempt)
                if wait is None and status >= 500:
                    wait = float(2**attempt)
                if wait is None:
                    raise GitHubCallError(f"{what}: {status} {_message(response)}", status) from None
                self._retry_or_fail(what, status, wait, attempt, _message(response))
                attempt += 1
                continue
            except GraphQLFailed as exc:
                errors = "; ".join(e.message for e in exc.response.errors or ())
                raise GitHubCallError(f"{what}: GraphQL errors: {errors}") from None
            except RequestError as exc:
                # No answer at all (refused, reset, timed out): retried like a 5xx.
                self._retry_or_fail(what, 0, float(2**attempt), attempt, f"no answer ({exc.exc!r})")
                attempt += 1
                continue
            self._note_budget(getattr(result, "headers", None))
            return result

    def _retry_or_fail(self, what: str, status: int, wait: float, attempt: int, why: str) -> None:
        limit = self.settings.max_wait.total_seconds()
        if wait > limit:
            until = (self.now() + timedelta(seconds=wait)).isoformat(timespec="seconds")
            raise GitHubCallError(
                f"{what}: {status} {why}: rate limited until {until}, longer than max_wait "
                f"({self.settings.max_wait})",
                status,
            )
        if attempt >= self.settings.max_retries:
            raise GitHubCallError(
                f"{what}: {status} {why} (still failing after {attempt} retries; max_retries)", status
            )
        self._sleep(wait)

    def _rate_limit_wait(self, response: Any, attempt: int) -> float | None:
        """Seconds to wait before retrying a 403/429 that is a rate limit, or None (not one)."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after.strip())
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            return self._seconds_until(str(headers["x-ratelimit-reset"]))
        if "secondary rate limit" in _message(response).lower() or response.status_code == 429:
            return float(_SECONDARY_FLOOR * (2**attempt))
        return None

    def _seconds_until(self, reset: str) -> float:
        try:
            at = datetime.fromtimestamp(int(reset), tz=UTC)
        except ValueError:
            return _SECONDARY_FLOOR
        # One extra second: the reset is rounded down to the second.
        return max((at - self.now()).total_seconds(), 0.0) + 1.0

    def _note_budget(self, headers: Any) -> None:
        if headers is None:
            return
        remaining = headers.get("x-ratelimit-remaining")
        reset = headers.get("x-ratelimit-reset")
        if remaining == "0" and reset:
            with self._lock:
                self._blocked_until = self.now() + timedelta(seconds=self._seconds_until(reset))

    def _wait_for_budget(self, what: str) -> None:
        with self._lock:
            until = self._blocked_until
            self._blocked_until = None
        if until is None:
            return
        wait = (until - self.now()).total_seconds()
        if wait <= 0:
            return
        if wait > self.settings.max_wait.total_seconds():
            raise GitHubCallError(
                f"{what}: the primary rate limit is spent until {until.isoformat(timespec='seconds')}, "
                f"longer than max_wait ({self.settings.max_wait})",
                403,
            )
        self._sleep(wait)

    # --- lists -----------------------------------------------------------------------------

    def pages(self, what: str, first: Callable[[], Any], model: Any) -> list[Any]:
        """Every item of a list call over all its pages, following ``Link: rel="next"``.

        ``first`` makes the first request (a typed githubkit method); the next pages are the URLs
        GitHub gives, parsed with ``list[model]``. Any failing page fails the whole list.
        """
        out: list[Any] = []
        response = self.call(what, first)
        seen: set[str] = set()
        page = 1
        while True:
            out.extend(self.parsed(what, response))
            link = _NEXT.search(response.headers.get("link") or "")
            if link is None:
                return out
            url = link.group(1)
            if url in seen:
                raise GitHubCallError(f"{what}: page {page} links back to a page already read ({url})")
            seen.add(url)
            page += 1
            response = self.call(f"{what} (page {page})", self._next_page(url, model))

    def _next_page(self, url: str, model: Any) -> Callable[[], Any]:
        gh = self.github
        return lambda: gh.request("GET", url, response_model=list[model])

    @staticmethod
    def parsed(what: str, response: Any) -> Any:
        """The typed data of a response; a shape GitHub's description does not allow fails."""
        from pydantic import ValidationError

        try:
            return response.parsed_data
        except ValidationError as exc:
            errors = exc.errors()
            where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
            why = errors[0]["msg"] if errors else str(exc)
            raise GitHubCallError(
                f"{what}: the answer does not match GitHub's description ({where}: {why})"
            ) from None

    def found(self, what: str, fn: Callable[[], Any]) -> Any:
        """The typed data of one ``GET`` (:meth:`call`, then :meth:`parsed`); None when GitHub
        answers 404 (no such user, membership, ...)."""
        try:
            return self.parsed(what, self.call(what, fn))
        except GitHubCallError as exc:
            if is_not_found(exc):
                return None
            raise

    def graphql(self, what: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        gh = self.github
        result: dict[str, Any] = self.call(what, lambda: gh.graphql.request(query, variables))
        return result


class OrgAccess:
    """One organisation through one API client: what the source, the deploy-key reader and the
    revoker are each built from (the plugin's wire function makes the pair)."""

    def __init__(self, settings: GitHubSettings, api: GitHubApi) -> None:
        self.settings = settings
        self.name = settings.name
        self.api = api

    @property
    def org(self) -> str:
        return self.settings.org


def _message(response: Any) -> str:
    try:
        body = response.raw_response.json()
    except Exception:
        return response.raw_response.reason_phrase or ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.raw_response.reason_phrase or ""


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, GitHubCallError) and exc.status == 404
