#!/usr/bin/env bash
# Install the Debian packages the deployment and browser tests need (PostgreSQL, Chromium).
# Idempotent: installs only what is missing, runs `apt-get update` at most once, and is a no-op
# when everything is present. Needs root for apt-get; without root it only reports what is missing.
set -euo pipefail

missing=()
have_pg() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null 2>&1
}
have_pg || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system-deps: postgresql and chromium already present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]} and not root; install them with apt-get" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-system-deps: installed ${missing[*]}"
