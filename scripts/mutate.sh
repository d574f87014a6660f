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

# The modules whose mistakes revoke the wrong thing or call partial data clean.
MODULES=(
  "offboard_audit/core/evaluate.py"
  "offboard_audit/core/planning.py"
  "offboard_audit/engine/revocation.py"
  "offboard_audit/engine/steps.py"
  "offboard_audit/engine/journal.py"
  "offboard_audit/engine/pipeline.py"
  "offboard_audit/daemon/webhook.py"
  "offboard_audit/core/audit_chain.py"
  "offboard_audit/core/selectors.py"
  "offboard_audit/core/people.py"
  "offboard_audit/engine/collect.py"
  "offboard_audit/engine/hr.py"
  "offboard_audit/core/lifecycle.py"
  "connectors/hr_records/translate.py"
  "connectors/hr_records/source.py"
)
if [ "$#" -gt 0 ]; then MODULES=("$@"); fi
# Tests that exercise them in process without external servers (SQLite only: fast and
# deterministic). Subprocess tests are left out: a child process imports the installed code,
# not the mutant.
TESTS=(
  tests/unit
  tests/integration/test_pipeline.py
  tests/integration/test_pipeline_partial.py
  tests/integration/test_pipeline_targeted.py
  tests/integration/test_hr_reads_that_shrink.py
  tests/integration/test_revocation.py
  tests/integration/test_revocation_identity.py
  tests/integration/test_webhook_contract.py
  tests/integration/test_webhook_identity.py
  tests/integration/test_webhook_signature.py
  tests/integration/test_daemon_jobs.py
  tests/integration/test_evidence_hostile.py
)

work=$(mktemp -d /tmp/offboard-mutate.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
git archive HEAD | tar -x -C "$work"
# Uncommitted changes would not be measured: say so rather than report a stale rate.
if ! git diff --quiet HEAD -- "${MODULES[@]}" tests; then
  echo "note: uncommitted changes in the modules or tests are not part of this run" >&2
fi
cd "$work"
{
  echo
  echo "[tool.mutmut]"
  printf 'source_paths = ["offboard_audit", "connectors"]\n'
  printf 'only_mutate = [%s]\n' "$(printf '"%s",' "${MODULES[@]}" | sed 's/,$//')"
  printf 'pytest_add_cli_args_test_selection = [%s]\n' "$(printf '"%s",' "${TESTS[@]}" | sed 's/,$//')"
  printf 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-k", "not postgres"]\n'
  printf 'also_copy = ["alembic", "alembic.ini", "connectors", "tests", "docs", "README.md"]\n'
} >> pyproject.toml

echo "running mutmut (about 2-3 mutants a second on 2 cores; progress in $work/run.log)"
python3 -m mutmut run --max-children 2 > run.log 2>&1 || true
if grep -q "failed to collect stats" run.log; then
  echo "the tests fail without any mutant: fix them first (see $work/run.log)" >&2
  tail -n 20 run.log >&2
  exit 1
fi
python3 -m mutmut results --all true > results.txt 2>/dev/null || true
killed=$(grep -c ': killed' results.txt || true)
survived=$(grep -c ': survived' results.txt || true)
total=$(grep -c ': ' results.txt || true)
report="$OLDPWD/mutation-report.txt"
{
  echo "mutation run of $(git -C "$OLDPWD" rev-parse --short HEAD) over: ${MODULES[*]}"
  echo "killed $killed, survived $survived, $((total - killed - survived)) other (timeout, no tests), of $total"
  echo
  for name in $(grep ': survived' results.txt | sed 's/^ *//; s/: survived$//'); do
    echo "== $name"
    python3 -m mutmut show "$name" 2>/dev/null | sed -n '/^---/,$p'
    echo
  done
} > "$report"
echo "survivors with their diffs: $report"
if [ "$total" -gt 0 ]; then
  echo "== killed $killed of $total mutants ($((100 * killed / total))%); $survived survived"
fi
