#!/usr/bin/env bash
# `make bench-admin`: the console's queries on a million seeded tasks, on PostgreSQL (brought up
# as for tests). `make bench-search` runs the search bench the same way (`bench-admin.sh search`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-services.sh
trap test_services_stop EXIT
python_env
test_services_start
cargo bench --bench "${1:-admin}"
