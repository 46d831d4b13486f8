#!/usr/bin/env bash
# Installs Chromium from Debian's packages for the dashboard's browser tests, and links it as
# bin/chromium. Idempotent: a Chromium already installed is only linked again. Browser tools that
# download their own build cannot be used here: Debian's package is the one that installs offline
# from the distribution's mirror.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/bin"
browser="$(command -v chromium || true)"
if [[ -z "$browser" ]]; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "Chromium is not installed: run 'sudo apt-get install -y chromium' (or this script as root)" >&2
    exit 1
  fi
  echo "Installing Chromium from Debian's packages"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium >/dev/null
  browser="$(command -v chromium)"
fi
ln -sfn "$browser" "$root/bin/chromium"
echo "Chromium $("$browser" --version 2>/dev/null | awk '{print $2}') is linked from bin/chromium"
