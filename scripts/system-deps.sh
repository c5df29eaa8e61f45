#!/usr/bin/env bash
# The Debian packages the tests need, installed when missing, so `make test` works on a
# fresh machine with nothing but the README. Each line of PACKAGES is
# "package:file-that-proves-it-is-installed". Later system components (PostgreSQL, ...)
# are added here, not in CI only.
#
# As root (or with passwordless sudo) it runs apt-get; otherwise it stops with the exact
# command to run. CIVICFLOW_NO_APT=1 never installs (print and stop) — for machines whose
# owner installs packages by hand, and for this script's own test.
set -euo pipefail

PACKAGES=(
  "chromium:${CIVICFLOW_CHROMIUM:-/usr/bin/chromium}"
  # The PostgreSQL source's tests start their own server (tests/fixtures/postgres.py);
  # Debian's service is not used, only the server binaries.
  "postgresql:${CIVICFLOW_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb"
  # npm fetches axe-core (the accessibility tests' checker) from the npm registry.
  "npm:/usr/bin/npm"
)

missing=()
for entry in "${PACKAGES[@]}"; do
  package=${entry%%:*}
  probe=${entry#*:}
  [[ -e "$probe" ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ "${CIVICFLOW_NO_APT:-}" == 1 ]]; then
  sudo=unavailable
elif [[ $(id -u) -eq 0 ]]; then
  sudo=
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  sudo=unavailable
fi
if [[ "$sudo" == unavailable ]]; then
  echo "civicflow: the tests need Debian package(s): ${missing[*]}" >&2
  echo "run as root, then 'make test' again:" >&2
  echo "  $command" >&2
  exit 1
fi

echo "civicflow: installing Debian package(s) the tests need: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for entry in "${PACKAGES[@]}"; do
  probe=${entry#*:}
  [[ -e "$probe" ]] || { echo "civicflow: ${entry%%:*} installed but $probe is missing" >&2; exit 1; }
done
