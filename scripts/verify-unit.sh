#!/usr/bin/env bash
# Checks deploy/offboard-audit.service with systemd's own tools, when they are installed:
# `systemd-analyze verify` (syntax, directives, the executable; any warning fails too) and
# `systemd-analyze security --offline` (the hardening: exposure at most 2.0 of 10).
# The unit names the production path of the executable; the check uses this machine's.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze is not installed: deploy/offboard-audit.service NOT verified"
  exit 0
fi
exe=$(command -v offboard-audit || true)
if [ -z "$exe" ]; then
  echo "offboard-audit is not on PATH (pip install -e .): cannot verify the unit" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#/opt/offboard-audit/bin/offboard-audit#$exe#" deploy/offboard-audit.service > "$work/offboard-audit.service"
out=$(systemd-analyze verify "$work/offboard-audit.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "systemd-analyze verify warned about deploy/offboard-audit.service" >&2
  exit 1
fi
if ! systemd-analyze security --offline=true --threshold=20 --no-pager "$work/offboard-audit.service" >"$work/security.txt" 2>&1; then
  cat "$work/security.txt" >&2
  echo "deploy/offboard-audit.service: exposure above 2.0 (systemd-analyze security)" >&2
  exit 1
fi
echo "deploy/offboard-audit.service: verified ($(tail -n 1 "$work/security.txt" | sed 's/^→ //'))"
