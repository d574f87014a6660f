"""Deploy keys as exposure: the reader's events and inventory against the local fake GitHub, and
the core's rule on them (a leaver's key that still exists is persistence-left-by-leaver, with a
remove task; never deleted automatically)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.github import PLUGIN
from connectors.github.translate import deploy_key_ref
from offboard_audit.core.exposure import exposure_scope
from offboard_audit.core.exposure_actors import ActorIndex, link_actors
from offboard_audit.core.exposure_rules import ExposureInputs, SecretIndex, evaluate_exposure
from offboard_audit.core.matching import match_all
from offboard_audit.core.records import CredentialKind, ExposureHow, Person, PersonStatus, Rule
from tests.support.github import NOW, Failure, GitHubWorld

LEFT = datetime(2026, 6, 15, tzinfo=UTC)


def seed(world: GitHubWorld) -> None:
    s = world.state
    alice = s.add_member("alice-dev", role="admin", name_id="alice@example.com")
    carol = s.add_member("cgone", name_id="carol@example.com")
    infra = s.add_repo("infra", admins=(alice,))
    web = s.add_repo("website")
    s.add_repo("docs")
    s.add_deploy_key(
        infra, "deploy-prod", added_by="CGone", created_at=LEFT - timedelta(days=30), read_only=False
    )
    s.add_deploy_key(infra, "mirror", added_by="alice-dev", created_at=LEFT - timedelta(days=300))
    s.add_deploy_key(web, "legacy", added_by=None, created_at=LEFT - timedelta(days=900))
    s.add_deploy_key(web, "cdn", added_by=carol.login, created_at=LEFT - timedelta(days=10))


def test_events_name_who_added_each_key_one_batch_per_repository(github_world: GitHubWorld) -> None:
    seed(github_world)
    reader = github_world.exposure(page_size=2)
    batches = list(reader.read_events({}, NOW))
    assert [b.stream for b in batches] == [
        "deploy-keys/acme/infra",
        "deploy-keys/acme/website",
        "deploy-keys/acme/docs",
    ]
    assert all(b.failure is None for b in batches)
    events = [e for b in batches for e in b.events]
    assert sorted((e.scope, e.actor.names, e.how, e.action) for e in events) == [
        ("acme/infra", ("CGone",), ExposureHow.CREATED, "deploy_key.added"),
        ("acme/infra", ("alice-dev",), ExposureHow.CREATED, "deploy_key.added"),
        ("acme/website", ("cgone",), ExposureHow.CREATED, "deploy_key.added"),
    ]  # the key without added_by names nobody
    carol = github_world.state.user_by_login("cgone")
    assert carol is not None
    assert {e.actor.account_id for e in events if e.actor.names[0].casefold() == "cgone"} == {str(carol.id)}
    calls = github_world.server.calls
    assert calls["GET /orgs/acme/repos"] == 2  # 3 repositories, 2 a page
    assert github_world.server.count("GET /repos/acme/") == 3
    # One lookup per distinct adder, whatever the case of the login.
    assert github_world.server.count("GET /users/") == 3
    assert batches[0].events_seen == 2 and batches[1].events_seen == 2


def test_a_404_on_one_repositorys_keys_fails_that_repository_alone(github_world: GitHubWorld) -> None:
    seed(github_world)
    github_world.server.fail("GET", "/repos/acme/website/keys", Failure(404, "Not Found"))
    reader = github_world.exposure()
    batches = {b.scope: b for b in reader.read_events({}, NOW)}
    failed = batches["acme/website"]
    assert failed.events == () and failed.checkpoint is None
    assert (
        failed.failure is not None and failed.failure.error == "GET /repos/acme/website/keys: 404 Not Found"
    )
    assert batches["acme/infra"].failure is None and len(batches["acme/infra"].events) == 2
    # The inventory does not guess about the repository it could not read.
    refs = [e.target for e in batches["acme/infra"].events]
    website_ref = deploy_key_ref("acme/website", github_world.state.repos["website"].keys[0].id)
    read = reader.inventory([*refs, website_ref])
    assert [(f.scope, f.error) for f in read.failed_scopes] == [
        ("acme/website", "GET /repos/acme/website/keys: 404 Not Found")
    ]
    assert {o.ref.scope for o in read.objects} == {"acme/infra"}


def test_inventory_checks_presence_and_names_the_repository_admins(github_world: GitHubWorld) -> None:
    seed(github_world)
    reader = github_world.exposure()
    events = [e for b in reader.read_events({}, NOW) for e in b.events]
    carol_infra = next(e.target for e in events if e.scope == "acme/infra" and e.actor.names == ("CGone",))
    # Someone removes the website key before the inventory is taken.
    website = next(e.target for e in events if e.scope == "acme/website")
    github_world.state.repos["website"].keys.clear()
    github_world.server.reset_calls()
    read = reader.inventory([carol_infra, website])
    states = {o.ref.object_id: o for o in read.objects}
    assert states[carol_infra.object_id].present
    assert states[carol_infra.object_id].detail == (
        "deploy key 'deploy-prod' (read-write), last used never; repository admins: alice-dev"
    )
    # Presence comes from this run's listing: the website key was listed, so it counts as present;
    # a later run sees it gone. Admins are read only for repositories holding a wanted key.
    assert github_world.server.calls["GET /repos/acme/infra/collaborators"] == 1
    assert github_world.server.count("GET /repos/acme/website/keys") == 0
    assert read.failed_scopes == () and set(read.scopes) == {"acme/infra", "acme/website"}


def test_a_fresh_reader_lists_the_wanted_repositories_and_sees_a_removed_key_gone(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    events = [e for b in github_world.exposure().read_events({}, NOW) for e in b.events]
    website = next(e.target for e in events if e.scope == "acme/website")
    github_world.state.repos["website"].keys.clear()
    read = github_world.exposure().inventory([website])
    assert [(o.ref.object_id, o.present) for o in read.objects] == [(website.object_id, False)]
    assert github_world.server.count("GET /repos/acme/website/collaborators") == 0


def test_a_key_a_leaver_added_that_still_exists_is_persistence_with_a_remove_task(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    source = github_world.source()
    data = source.collect()
    carol = Person("E1003", "carol@example.com", "Carol Gone", PersonStatus.TERMINATED, LEFT, source="hr")
    alice = Person("E1001", "alice@example.com", "Alice Active", PersonStatus.ACTIVE, source="hr")
    links = match_all(data.accounts, {"gh": PLUGIN.match}, [carol, alice], [])
    reader = github_world.exposure()
    events = [e for b in reader.read_events({}, NOW) for e in b.events]
    index = ActorIndex.build(links, [carol, alice], [])
    actor_links = link_actors("gh", "github", {e.actor for e in events}, index)
    read = reader.inventory([e.target for e in events])
    inputs = ExposureInputs(
        source="gh",
        system="github",
        events=events,
        links=actor_links,
        secrets=SecretIndex(()),
        objects={o.ref.key: o for o in read.objects},
        index=index,
    )
    findings = evaluate_exposure(inputs, NOW)
    assert sorted(
        (f.rule, f.credential.credential_id if f.credential else "", f.account.scope) for f in findings
    ) == [
        (Rule.PERSISTENCE_LEFT_BY_LEAVER, f"acme/infra/keys/{k.id}", exposure_scope("acme/infra"))
        for k in github_world.state.repos["infra"].keys
        if k.title == "deploy-prod"
    ] + [
        (Rule.PERSISTENCE_LEFT_BY_LEAVER, f"acme/website/keys/{k.id}", exposure_scope("acme/website"))
        for k in github_world.state.repos["website"].keys
        if k.title == "cdn"
    ]
    infra = next(f for f in findings if "infra" in f.account.scope)
    assert infra.credential is not None and infra.credential.kind is CredentialKind.DEPLOY_KEY
    assert infra.person == carol and infra.severity.value == "high"
    assert "repository admins: alice-dev" in infra.reason
    # The remove task goes to the repository's admins, not to the leaver's manager.
    assert infra.owner is not None and (infra.owner.via.value, infra.owner.email) == (
        "object-admins",
        "alice-dev",
    )
