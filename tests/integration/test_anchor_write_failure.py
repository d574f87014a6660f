"""A command that appended audit events and could not anchor them in ``[audit] anchor_file``
must not exit 0: cron and CI read 0 as "all done", and anchors that silently stop coming leave
every later event unanchored (a cut-off tail goes unnoticed) with nobody told but the terminal."""

from __future__ import annotations

from pathlib import Path

from tests.support.fake_connector import cli, standard_world


def test_a_revoke_whose_anchor_cannot_be_written_exits_4_not_0(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    anchors = tmp_path / "no-such-dir" / "anchors.jsonl"
    world.config_path.write_text(world.config_path.read_text() + f'\n[audit]\nanchor_file = "{anchors}"\n')
    assert cli(world, "audit")[0] == 1  # open findings, no event appended: nothing to anchor

    code, _, err = cli(world, "revoke", "--person", "E2", "--apply")
    # The revocation itself happened and says so; the exit code says the anchor did not.
    assert sorted(c for _, c in world.changes()) == ["AK2", "bob"]
    assert "could not write the audit anchor" in err
    assert code == 4, err

    # With the directory there, the same kind of pass anchors and exits 0.
    anchors.parent.mkdir()
    code, _, err = cli(world, "undo", "--person", "E2", "--apply")
    assert code == 0, err
    assert anchors.read_text().strip()
