#!/usr/bin/env bash
# Tools the deploy tests need (test/deploy/manifests.test.ts): kubectl, which
# renders the Kustomize folders, and a compose client that validates
# deploy/compose.yaml. Idempotent: installs only what is missing.
set -euo pipefail

if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is missing: the deploy tests render deploy/k8s with 'kubectl kustomize'. Install kubectl (1.27 or later)." >&2
  exit 1
fi

# `docker compose` (v2) needs Docker's own packages; Debian ships the v1 client,
# whose `config` command validates a file without a Docker engine.
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose (Debian package) to validate deploy/compose.yaml"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
