#!/usr/bin/env bash
# The one test command: installs what the tests need, then lint, types and the whole suite
# (unit, connectors against real slapd / Samba AD / moto / local GCP endpoints, integration on
# SQLite and a real PostgreSQL that the test session starts and stops).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
echo "== ruff"
python3 -m ruff check .
python3 -m ruff format --check .
echo "== mypy"
python3 -m mypy
echo "== import boundaries"
lint-imports --no-cache
echo "== systemd unit"
bash scripts/verify-unit.sh
echo "== pytest"
python3 -m pytest -q "$@"
