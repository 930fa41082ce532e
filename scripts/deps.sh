#!/usr/bin/env bash
# Installs the system components the test suite uses, from Debian's packages:
#   postgresql  - the PostgreSQL store path (tests start a private server in a temp dir)
#   prometheus  - promtool (rule checks and unit tests) and a real server for the scrape test
#   chromium    - the console's browser tests (Playwright drives /usr/bin/chromium)
# Idempotent and quiet when everything is present. Needs root (or passwordless sudo) to install.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)

if [ ${#need[@]} -eq 0 ]; then
  echo "deps: postgresql, prometheus and chromium are present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "deps: NOT INSTALLED (${need[*]}): need root or sudo; tests that use them will be skipped with a reason" >&2
    exit 0
  fi
fi
echo "deps: installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The postgresql package may start a cluster service; the tests run their own private server instead.
echo "deps: done"
