#!/usr/bin/env bash
# Install the system packages the test suite drives for real, when missing:
# PostgreSQL server binaries (storage tests start a throwaway server) and Chromium
# (Playwright drives it headless for the web-page test). Debian/Ubuntu, via apt-get.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_chromium() { [ -x "${LMREC_CHROMIUM:-/usr/bin/chromium}" ]; }

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (install them, or set LMREC_SKIP_POSTGRES=1 /" \
       "LMREC_SKIP_BROWSER=1 to skip those tests)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true  # a stale index still installs from a local mirror
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
