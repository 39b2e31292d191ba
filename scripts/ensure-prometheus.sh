#!/usr/bin/env bash
# Makes promtool and prometheus available without installing the Debian
# package system-wide: the package's postinst would create a user and start a
# daemon, and the tests need neither, only the two binaries. Prints the
# directory that holds them (stdout carries nothing else), so callers can do
#   PATH="$(scripts/ensure-prometheus.sh):$PATH"
# Idempotent: binaries already on PATH or already unpacked are used as they are.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/prometheus"
bin="$dest/usr/bin"

have_both() { [ -x "$1/promtool" ] && [ -x "$1/prometheus" ]; }

if command -v promtool >/dev/null 2>&1; then
  onpath="$(dirname "$(command -v promtool)")"
  if have_both "$onpath"; then
    echo "$onpath"
    exit 0
  fi
fi

if have_both "$bin"; then
  echo "$bin"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A fresh machine may have no package lists yet; update only when the download needs it.
if ! (cd "$work" && apt-get download prometheus >&2); then
  apt-get update -qq >&2
  (cd "$work" && apt-get download prometheus >&2)
fi

# Unpacked beside the destination and moved in one step, so an interrupted run
# never leaves a half-unpacked tree that the check above would accept.
mkdir -p "$root/.tools"
dpkg -x "$work"/prometheus_*.deb "$work/root"
rm -rf "$dest"
mv "$work/root" "$dest"

if ! have_both "$bin"; then
  echo "the prometheus package did not provide $bin/promtool and $bin/prometheus" >&2
  exit 1
fi
echo "$bin"
