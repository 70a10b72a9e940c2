#!/usr/bin/env bash
# `make bench-api` and `make bench-load` (this script with `load`): the HTTP API under wrk, and
# for load WebSockets and memory, on PostgreSQL and Redis (brought up as for tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "bench-api: installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk; else sudo apt-get install -y wrk; fi
fi
source scripts/test-services.sh
trap test_services_stop EXIT
python_env
test_services_start
cargo bench --bench "${1:-api}"
