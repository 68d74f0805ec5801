#!/usr/bin/env bash
# Runs every test of the project, the integration tests against a real
# Docker distribution registry included. If no registry binary is on this
# machine it builds one from the Go module proxy (no root needed); Debian's
# `docker-registry` package is used when installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-registry >/dev/null 2>&1 && ! command -v registry >/dev/null 2>&1 \
   && [ ! -x "$(go env GOPATH)/bin/registry" ] && [ -z "${OCIFETCH_REGISTRY_BIN:-}" ]; then
  echo "installing the distribution registry (go install) ..."
  GOFLAGS= go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
fi

# cosign signs the images of the trust-policy tests; without it they skip
# locally (and fail in CI).
if ! command -v cosign >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/cosign" ] && [ -z "${OCIFETCH_COSIGN_BIN:-}" ]; then
  echo "installing cosign (go install, takes a few minutes) ..."
  GOFLAGS= go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
fi

go test -race -count=1 -timeout 30m ./... "$@"
