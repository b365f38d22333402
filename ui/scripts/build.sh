#!/usr/bin/env bash
# Rebuild the dashboard into axon/static (commit the result): npm ci && npm run build.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund
npm run build
