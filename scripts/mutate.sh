#!/usr/bin/env bash
# Mutation testing (mutmut 3) over the safety-critical modules, with the tests that cover them.
# Not part of CI: it takes a while. Runs in a scratch copy of the committed tree, so the
# working tree is never touched; prints the kill rate and the surviving mutants.
#
#   bash scripts/mutate.sh                 # every safety-critical module
#   bash scripts/mutate.sh offboard_audit/core/evaluate.py    # just one (a path or a glob)
#
# Each survivor is listed in docs/testing.md as killed-later or equivalent, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check 'mutmut>=3.3,<4' >/dev/null

# The modules whose mistakes revoke the wrong thing, call partial data clean or run the audit on
# the wrong days.
MODULES=(
  "offboard_audit/core/caps.py"
  "offboard_audit/core/evaluate.py"
  "offboard_audit/core/planning.py"
  "offboard_audit/core/plan_records.py"
  "offboard_audit/engine/revocation.py"
  "offboard_audit/engine/steps.py"
  "offboard_audit/engine/journal.py"
  "offboard_audit/engine/pipeline.py"
  "offboard_audit/daemon/webhook.py"
  "offboard_audit/core/audit_chain.py"
  "offboard_audit/core/chain_verify.py"
  "offboard_audit/core/chain_history.py"
  "offboard_audit/core/stored.py"
  "offboard_audit/core/selectors.py"
  "offboard_audit/core/people.py"
  "offboard_audit/engine/collect.py"
  "offboard_audit/engine/hr.py"
  "offboard_audit/core/lifecycle.py"
  "offboard_audit/core/cron.py"
  "connectors/hr_records/translate.py"
  "connectors/hr_records/source.py"
  "connectors/aws_iam/actions.py"
  "connectors/aws_iam/revoker.py"
  "connectors/gcp_iam/actions.py"
  "connectors/gcp_iam/revoker.py"
  "connectors/github/actions.py"
  "connectors/github/revoker.py"
  "connectors/ldap/actions.py"
  "connectors/ldap/revoker.py"
  "connectors/vault/actions.py"
  "connectors/vault/revoker.py"
)
if [ "$#" -gt 0 ]; then MODULES=("$@"); fi
# Tests that exercise them in process (SQLite only: fast and deterministic). The LDAP and Vault
# ones talk to a real slapd or OpenBao that each mutant's test session starts (about a second); those that need the
# Samba AD DC (marked samba, ~8 s to provision per session) are left out, so the AD dialect is
# covered here by ldap3's in-memory directory only. Subprocess tests are left out: a child
# process imports the installed code, not the mutant. Where a file mixes both, only its
# in-process tests are named (file::test).
TESTS=(
  tests/unit
  tests/integration/test_pipeline.py
  tests/integration/test_pipeline_partial.py
  tests/integration/test_pipeline_targeted.py
  tests/integration/test_hr_reads_that_shrink.py
  tests/integration/test_revocation.py
  tests/integration/test_revocation_identity.py
  tests/integration/test_revocation_failed_calls.py
  tests/integration/test_revocation_connectors.py
  tests/integration/test_evidence_from_chain.py
  tests/integration/test_evidence_hostile.py
  tests/integration/test_webhook_contract.py
  tests/integration/test_webhook_identity.py
  tests/integration/test_webhook_signature.py
  tests/integration/test_webhook_while_hr_breaker_holds.py
  tests/integration/test_daemon_jobs.py
  tests/integration/test_audit_trail_modes.py::test_keyed_events_carry_an_hmac_of_their_hash_made_with_the_audit_key
  tests/integration/test_audit_trail_modes.py::test_deleting_the_first_events_and_rehashing_passes_unkeyed_but_not_keyed
  tests/integration/test_audit_trail_modes.py::test_stripping_the_macs_is_not_a_way_around_the_key
  tests/integration/test_audit_trail_modes.py::test_a_key_set_later_keys_the_events_from_then_on_and_verify_says_what_each_part_proves
  tests/integration/test_audit_trail_modes.py::test_anchor_file_gets_the_head_this_process_appended_and_is_only_ever_appended_to
  tests/integration/test_audit_trail_modes.py::test_anchors_catch_a_cut_off_tail_and_name_the_first_event_that_disagrees
  tests/integration/test_audit_trail_modes.py::test_an_unreadable_anchor_line_is_a_problem
  tests/integration/test_run_crash_consistency.py::test_a_run_marked_abandoned_while_it_ran_cannot_finish_and_stores_nothing
  tests/integration/test_run_crash_consistency.py::test_a_running_run_renews_its_lease_so_nobody_takes_it_for_dead
  tests/integration/test_run_crash_consistency.py::test_a_run_of_another_host_is_abandoned_once_its_lease_ran_out_and_not_before
  tests/integration/test_run_crash_consistency.py::test_the_next_run_marks_a_run_whose_lease_ran_out_abandoned
  tests/integration/test_run_crash_consistency.py::test_a_person_a_webhook_inserted_meanwhile_is_left_alone_without_aborting_the_runs_transaction
  tests/integration/test_enrichment_failures.py
  tests/integration/test_mutation_holes_engine.py
  tests/integration/test_mutation_holes_webhook_app.py
  tests/integration/test_mutation_holes_last_hr_read.py
  tests/integration/test_mutation_holes_auto_revoke.py
  tests/integration/test_mutation_holes_targeted.py
  tests/integration/test_mutation_holes_engine_hr.py
  tests/integration/test_mutation_holes_collect.py
  tests/integration/test_mutation_holes_collect_detail.py
  tests/integration/test_mutation_holes_keep_last_known.py
  tests/integration/test_mutation_holes_unenriched.py
  tests/integration/test_mutation_holes_journal.py
  tests/integration/test_mutation_holes_revocation_run.py
  tests/integration/test_mutation_holes_revocation_undo.py
  tests/integration/test_mutation_holes_revocation_misc.py
  tests/integration/test_mutation_holes_pipeline_entry.py
  tests/integration/test_mutation_holes_pipeline_full.py
  tests/integration/test_mutation_holes_pipeline_person.py
  tests/integration/test_snapshot_diff.py
  tests/integration/test_pipeline_overlap.py
  tests/integration/test_webhook_scales_with_the_person.py
  tests/integration/test_revocation_rehire.py
  tests/integration/test_rehired_keys_not_deleted.py
  tests/integration/test_revoke_after_webhook_rehire.py
  tests/integration/test_webhook_during_full_run.py
  tests/integration/test_hr_refresh_namesakes.py
  tests/integration/test_carry_away_sources.py
  tests/connectors/aws/test_revoker.py
  tests/connectors/aws/test_identity.py
  tests/connectors/aws/test_failed_calls.py
  tests/connectors/aws/test_mutation_holes_action_defs.py
  tests/connectors/aws/test_mutation_holes_deny_sessions.py
  tests/connectors/aws/test_mutation_holes_read_objects.py
  tests/connectors/aws/test_mutation_holes_revoker_base.py
  tests/connectors/test_mutation_holes_hr_source2.py
  tests/connectors/gcp/test_revoker.py
  tests/connectors/gcp/test_identity.py
  tests/connectors/gcp/test_hierarchy.py
  tests/connectors/gcp/test_mutation_holes_sa_read.py
  tests/connectors/gcp/test_mutation_holes_key_read.py
  tests/connectors/gcp/test_mutation_holes_bindings.py
  tests/connectors/gcp/test_mutation_holes_revoker.py
  tests/connectors/github/test_revoker.py
  tests/connectors/github/test_source.py
  tests/connectors/github/test_translate.py
  tests/connectors/github/test_exposure.py
  tests/connectors/github/test_gaps.py::test_a_protected_selector_on_a_github_login_refuses_that_logins_revocation
  tests/connectors/github/test_gaps.py::test_deploy_keys_unreadable_on_a_later_run_keep_the_earlier_finding_stale_and_unresolved
  tests/connectors/github/test_gaps.py::test_an_audit_log_event_after_termination_makes_the_membership_critical
  tests/connectors/github/test_gaps.py::test_without_the_audit_log_the_same_membership_is_only_high
  tests/connectors/ldap/test_openldap.py
  tests/connectors/ldap/test_identity.py
  tests/connectors/ldap/test_protected.py
  tests/connectors/ldap/test_referrals.py
  tests/connectors/ldap/test_group_filter.py
  tests/connectors/ldap/test_translation.py
  tests/connectors/ldap/test_389ds_mock.py
  tests/connectors/ldap/test_ad_mock.py
  tests/connectors/github/test_app_tokens.py
  tests/connectors/github/test_mutation_holes_remove_member.py
  tests/connectors/github/test_mutation_holes_listed_actions.py
  tests/connectors/ldap/test_mutation_holes_dn_identity.py
  tests/connectors/ldap/test_mutation_holes_revoker_base.py
  tests/connectors/ldap/test_mutation_holes_leave_group.py
  tests/connectors/ldap/test_mutation_holes_lock_ssh.py
  tests/connectors/ldap/test_ad_critical_objects.py
  tests/connectors/ldap/test_ppolicy_expiring_lock.py
  tests/connectors/ldap/test_ad_range_retrieval.py
  tests/connectors/vault/test_revoker.py
  tests/connectors/vault/test_rotation.py
  tests/connectors/vault/test_kv_rotate_task.py
  tests/connectors/vault/test_exposure_openbao.py
  tests/connectors/vault/test_persistence_openbao.py
  tests/connectors/vault/test_evidence.py
  tests/connectors/vault/test_settings.py
  tests/connectors/vault/test_translate.py
  tests/connectors/vault/test_mutation_holes_entity.py
  tests/connectors/vault/test_mutation_holes_userpass.py
  tests/connectors/vault/test_mutation_holes_token_transit.py
)

work=$(mktemp -d /tmp/offboard-mutate.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
git archive HEAD | tar -x -C "$work"
# Uncommitted changes would not be measured: say so rather than report a stale rate.
if ! git diff --quiet HEAD -- "${MODULES[@]}" tests; then
  echo "note: uncommitted changes in the modules or tests are not part of this run" >&2
fi
cd "$work"
# A test file named here but not committed (yet) is left out, with a note.
present=()
for t in "${TESTS[@]}"; do
  if [ -e "${t%%::*}" ]; then present+=("$t"); else echo "note: $t is not in the committed tree" >&2; fi
done
TESTS=("${present[@]}")
{
  echo
  echo "[tool.mutmut]"
  printf 'source_paths = ["offboard_audit", "connectors"]\n'
  printf 'only_mutate = [%s]\n' "$(printf '"%s",' "${MODULES[@]}" | sed 's/,$//')"
  printf 'pytest_add_cli_args_test_selection = [%s]\n' "$(printf '"%s",' "${TESTS[@]}" | sed 's/,$//')"
  printf 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-k", "not postgres", "-m", "not samba"]\n'
  printf 'also_copy = ["alembic", "alembic.ini", "connectors", "tests", "docs", "README.md"]\n'
} >> pyproject.toml

echo "running mutmut (about 2-3 mutants a second on 2 cores; progress in $work/run.log)"
python3 -m mutmut run --max-children 2 > run.log 2>&1 || true
if grep -qiE "failed to collect stats|failed to run clean test|failed to collect list of tests" run.log; then
  echo "the tests fail without any mutant: fix them first (see $work/run.log)" >&2
  tail -n 20 run.log >&2
  exit 1
fi
python3 -m mutmut results --all true > results.txt 2>/dev/null || true
# Per module: killed / survived / other (no tests, timeout, ...) and the kill rate.
per_module() {
  python3 - results.txt <<'PY'
import collections, re, sys
counts = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    if ": " not in line:
        continue
    name, status = line.strip().rsplit(": ", 1)
    module = re.split(r"\.x[_\u01c1]", name, maxsplit=1)[0]
    counts[module][status] += 1
for module, c in sorted(counts.items()):
    total = sum(c.values())
    other = ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s not in ("killed", "survived"))
    print(f"  {module}: killed {c['killed']} of {total} ({100 * c['killed'] // total}%), "
          f"survived {c['survived']}" + (f", {other}" if other else ""))
PY
}
killed=$(grep -c ': killed' results.txt || true)
survived=$(grep -c ': survived' results.txt || true)
total=$(grep -c ': ' results.txt || true)
report="$OLDPWD/mutation-report.txt"
{
  echo "mutation run of $(git -C "$OLDPWD" rev-parse --short HEAD) over: ${MODULES[*]}"
  echo "killed $killed, survived $survived, $((total - killed - survived)) other (timeout, no tests), of $total"
  per_module
  echo
  for name in $(grep ': survived' results.txt | sed 's/^ *//; s/: survived$//'); do
    echo "== $name"
    python3 -m mutmut show "$name" 2>/dev/null | sed -n '/^---/,$p'
    echo
  done
} > "$report"
echo "survivors with their diffs: $report"
per_module
if [ "$total" -gt 0 ]; then
  echo "== killed $killed of $total mutants ($((100 * killed / total))%); $survived survived"
fi
