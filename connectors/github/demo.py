"""The GitHub part of ``offboard-audit demo``: an organisation on a local fake GitHub.

Seeded from the demo HR people (looked up by employee id, so the HR file stays the one source of
names), with SAML identities for the staff: Bob left in September and a token he SAML-authorized
was used after that (critical); Carol, gone since June, added a deploy key that still opens the
infrastructure repository (persistence, a remove task) and still has an invitation pending to her
other address; Grace's login is known only through the owners map; a contractor nobody in HR
knows (orphan) and a bot (a service account). The server listens on 127.0.0.1 on an OS-chosen
port; ``close`` stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from offboard_audit.core.protocols import DemoPart
from offboard_audit.core.records import Person

ORG = "acme-demo"


def demo(people: Sequence[Person], now: datetime) -> DemoPart:
    from connectors.github.clients import GitHubClients
    from connectors.github.demo_fake import FakeGitHubServer, GitHubFakeState, fake_github_client

    by_id = {p.employee_id: p for p in people}
    state = GitHubFakeState(ORG)

    def email(employee_id: str) -> str | None:
        p = by_id.get(employee_id)
        return p.email if p is not None else None

    def left(employee_id: str, fallback_days: int) -> datetime:
        p = by_id.get(employee_id)
        at = p.terminated_at if p is not None and p.terminated_at is not None else None
        return min(at, now - timedelta(days=2)) if at else now - timedelta(days=fallback_days)

    alice = state.add_member("alice-dev", role="admin", name_id=email("E1001"), name="Alice Active")
    bob = state.add_member("bobthebuilder", name_id=email("E1002"))
    carol = state.add_member("cgone", name_id=email("E1003"))
    grace = state.add_outside_collaborator("gracehopper")
    state.add_member("frank-ol", name_id=email("E1006"))
    state.add_member("mallory-x")  # nobody in HR knows her: an orphan
    state.add_member("release-bot", bot=True)

    bob_left = left("E1002", 60)
    # Authorized for SSO long before he left, and used three weeks after.
    state.authorize(
        bob,
        authorized_at=bob_left - timedelta(days=200),
        accessed_at=min(bob_left + timedelta(days=21), now - timedelta(hours=3)),
        title="laptop",
    )
    state.authorize(
        bob,
        "SSH key",
        fingerprint="SHA256:q3bN0b5k3yJm7dEm0fAk3",
        authorized_at=bob_left - timedelta(days=400),
    )
    carol_left = left("E1003", 160)
    state.authorize(
        carol,
        authorized_at=carol_left - timedelta(days=90),
        accessed_at=carol_left - timedelta(days=2),
        title="scripts",
    )
    carol_alias = next((a for a in by_id["E1003"].aliases if "@" in a), None) if "E1003" in by_id else None
    if carol_alias:
        state.invite(alice, email=carol_alias, created_at=carol_left - timedelta(days=5))

    infra = state.add_repo("infra", admins=(alice,))
    state.add_repo("website")
    # Added by Carol a month before she left; CI still uses it.
    state.add_deploy_key(
        infra,
        "deploy-prod",
        added_by=carol.login,
        created_at=carol_left - timedelta(days=30),
        read_only=False,
        last_used=now - timedelta(days=1),
    )
    state.add_deploy_key(infra, "read-mirror", added_by=alice.login, created_at=now - timedelta(days=300))

    # A fine-grained token Bob still holds (read because the demo runs as a GitHub App).
    state.grant(bob, token_name="release script", granted_at=bob_left - timedelta(days=40))

    server = FakeGitHubServer(state).start()
    # As a GitHub App: only an App can list fine-grained tokens. The client is injected with an
    # installation token, so the private key variable is never read.
    client = GitHubClients(github=fake_github_client(server, "ghs_demo_installation"))
    source = {
        "name": "github",
        "type": "github",
        "org": ORG,
        "app_id": 1,
        "private_key_env": "GITHUB_APP_PRIVATE_KEY",
        "installation_id": 1,
        "owners": {grace.login: email("E1007") or "grace@example.com"},
    }
    return DemoPart(source=source, client=client, close=server.stop)
