#!/usr/bin/env bash
# Debian's chromium for the @workflow/web check (interop/web/check-ui.mjs).
# Installs it with apt-get when missing and we are root; otherwise says what to do.
set -euo pipefail
if command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  command -v chromium >/dev/null && exit 0
fi
echo "ensure-chromium.sh: install Debian's chromium (apt-get install chromium) or set CHROMIUM" >&2
exit 1
