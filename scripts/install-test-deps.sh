#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine: the Python package with
# its test extras, and the real servers the tests start themselves (OpenLDAP slapd, Samba AD DC,
# PostgreSQL). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapwhoami >/dev/null 2>&1 || need_apt+=(ldap-utils)
command -v samba-tool >/dev/null 2>&1 || need_apt+=(samba samba-ad-provision samba-dsdb-modules krb5-user)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=""; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts no daemons here (no systemd); the tests run their own on loopback ports.
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
