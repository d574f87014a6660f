"""Benchmark of the github source on the local fake GitHub (REST + GraphQL on 127.0.0.1).

Seeds an organisation of ``--members`` members (each with a SAML identity, one in twenty an owner,
one SAML-authorized token each), ``--repos`` repositories (one deploy key each, a tenth of them
added by a leaver) and ``--leavers`` of the members as leavers, each with two fine-grained tokens
and an audit-log event. Then measures, with the connector's own code (githubkit, typed models, Link
paging, GitHub App auth so fine-grained tokens are read, ``audit_log = true``):

1. **bulk pass** (``collect``): the member, owner, outside-collaborator, invitation and
   credential-authorization lists and the SAML identities (GraphQL), 100 a page;
2. **detail pass** (``detail``) for the leavers only: fine-grained tokens (10 owners a call) and
   one audit-log call per leaver;
3. **deploy keys** (the exposure reader): the repository list and each repository's keys, one
   lookup per distinct adder, and the admins of the repositories holding a leaver's key.

Prints API calls (counted by the server, by endpoint) and wall time of each. Aim (issue 16): calls
grow with leavers and pages, not with repositories x members.

Run from the repository root:  python bench/github_scale.py [--members 5000] [--repos 2000] [--leavers 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from connectors.github import PLUGIN  # noqa: E402
from connectors.github.clients import GitHubClients  # noqa: E402
from connectors.github.demo_fake import FakeGitHubServer, GitHubFakeState, fake_github_client  # noqa: E402
from offboard_audit.core.options import SourceOptions  # noqa: E402
from offboard_audit.core.protocols import SourceContext  # noqa: E402

NOW = datetime.now(UTC)


class CountingServer(FakeGitHubServer):
    def __init__(self, state: GitHubFakeState) -> None:
        super().__init__(state)
        self.calls: Counter[str] = Counter()

    def route(self, method: str, path: str, query: Any, body: Any, headers: Any) -> Any:
        # Group per-repository and per-user paths so the table stays short.
        key = f"{method} {path}"
        for prefix in ("/repos/bench/", "/users/", "/app/installations/"):
            if path.startswith(prefix):
                tail = path.rsplit("/", 1)[1]
                key = f"{method} {prefix}*/{tail}" if prefix == "/repos/bench/" else f"{method} {prefix}*"
        self.calls[key] += 1
        return super().route(method, path, query, body, headers)


def seed(members: int, repos: int, leavers: int) -> tuple[GitHubFakeState, list[str]]:
    s = GitHubFakeState("bench")
    users = []
    for i in range(members):
        role = "admin" if i % 20 == 0 else "member"
        u = s.add_member(f"dev{i:05d}", role=role, name_id=f"dev{i:05d}@example.com")
        s.authorize(u, accessed_at=NOW - timedelta(days=i % 30))
        users.append(u)
    left = users[1 : 1 + leavers * 7 : 7][:leavers]
    for u in left:
        s.grant(u, token_name="ci", last_used_at=NOW - timedelta(days=2))
        s.grant(u, token_name="laptop")
        s.log(u, "git.clone", NOW - timedelta(days=1), repo="api")
    for i in range(40):
        s.add_outside_collaborator(f"contractor{i:03d}")
    for i in range(25):
        s.invite(users[0], email=f"new{i}@example.com")
    for i in range(repos):
        repo = s.add_repo(f"repo{i:05d}", admins=(users[(i * 13) % members],))
        adder = left[i % len(left)].login if i % 10 == 0 else users[(i * 31) % members].login
        s.add_deploy_key(repo, f"deploy-{i}", added_by=adder)
    return s, [u.login for u in left]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--leavers", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    t0 = time.perf_counter()
    state, leaver_logins = seed(args.members, args.repos, args.leavers)
    server = CountingServer(state).start()
    print(
        f"seeded {args.members} members, {args.repos} repositories, {args.leavers} leavers "
        f"in {time.perf_counter() - t0:.1f}s; fake GitHub at {server.url}"
    )
    options = SourceOptions(
        {
            "name": "gh",
            "type": "github",
            "org": "bench",
            "app_id": 1,
            "private_key_env": "UNUSED",
            "installation_id": 1,
            "audit_log": True,
            "workers": args.workers,
        }
    )
    # An installation token, as a GitHub App would use (the fake lets only those list tokens).
    client = GitHubClients(fake_github_client(server, "ghs_bench"))
    ctx = SourceContext(base_dir=REPO, env={}, clients={"gh": client})
    try:
        source = PLUGIN.make_source(options, ctx)

        def measure(label: str, fn: Any) -> Any:
            server.calls.clear()
            start = time.perf_counter()
            result = fn()
            wall = time.perf_counter() - start
            total = sum(server.calls.values())
            print(f"\n{label}: {total} API calls in {wall:.2f}s")
            for key, n in sorted(server.calls.items(), key=lambda kv: -kv[1]):
                print(f"  {n:6d}  {key}")
            return result

        data = measure("bulk pass (collect)", source.collect)
        print(f"  -> {len(data.accounts)} accounts, {len(data.credentials)} credentials")
        wanted = {login.casefold() for login in leaver_logins}
        asked = [a for a in data.accounts if a.username.casefold() in wanted]
        detail = measure(f"detail pass ({len(asked)} leavers)", lambda: source.detail(asked))
        print(f"  -> {len(detail.credentials)} credentials, warnings {list(detail.warnings)}")
        assert PLUGIN.make_exposure is not None
        reader = PLUGIN.make_exposure(options, ctx)
        assert reader is not None
        batches = measure("deploy keys: events", lambda: list(reader.read_events({}, NOW)))
        events = [e for b in batches for e in b.events]
        mine = [e.target for e in events if e.actor.names[0].casefold() in wanted]
        print(f"  -> {len(batches)} repositories, {len(events)} key events, {len(mine)} by leavers")
        read = measure(f"deploy keys: inventory ({len(mine)} leavers' keys)", lambda: reader.inventory(mine))
        print(f"  -> {sum(o.present for o in read.objects)} still present")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
