#!/usr/bin/env bash
# make image-test: builds the CPU image from the top-level Dockerfile with podman and runs it.
#
# No container registry is reachable from these machines, so the three base images the
# Dockerfile takes as build arguments are made here first, from Debian's packages (mmdebstrap)
# and, for Rust, this machine's rustup toolchain; they are kept between runs. Then the image is
# built (crates.io and PyPI are reachable) and run: it must answer /healthz and /readyz, run as
# uid 10001, pass its HEALTHCHECK, and recognise a sample page uploaded through the API.
#
# Needs root and Debian's podman and mmdebstrap (installed when missing). Takes about half an
# hour on 2 cores the first time (the release build); the README has the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "image-test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (podman builds as root here)"
for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || {
    echo "image-test: installing podman and mmdebstrap (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah mmdebstrap fuse-overlayfs uidmap >/dev/null
    break
  }
done

BASES=localhost/ocrd-base
MIRROR=http://deb.debian.org/debian
started=$(date +%s)

base() { # name, then mmdebstrap arguments; builds the base once
  local name="$1"; shift
  if podman image exists "$BASES/$name"; then return; fi
  echo "image-test: making $BASES/$name from Debian 12"
  mmdebstrap --variant=apt --quiet "$@" bookworm - "$MIRROR" | podman import "${CHANGES[@]}" - "$BASES/$name" >/dev/null
  CHANGES=()
}

CHANGES=()
base debian-slim --include=ca-certificates
CHANGES=(--change 'CMD ["python3"]')
base python --include=ca-certificates,python3,python3-pip,python3-venv
toolchain=$(readlink -f "$(rustc --print sysroot)")
[ -x "$toolchain/bin/cargo" ] || die "no cargo beside rustc in $toolchain"
CHANGES=(--change "ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
         --change "ENV CARGO_HOME=/usr/local/cargo")
base "rust-$(rustc --version | cut -d' ' -f2)" --include=ca-certificates,gcc,g++,libc6-dev,make,perl,pkg-config \
  --customize-hook="copy-in $toolchain /opt" --customize-hook="chroot \$1 mv /opt/$(basename "$toolchain") /opt/rust"
bases_done=$(date +%s)

echo "image-test: building localhost/ocrd:test"
podman build --network=host --format docker \
  --build-arg RUST_IMAGE="$BASES/rust-$(rustc --version | cut -d' ' -f2)" \
  --build-arg PYTHON_IMAGE="$BASES/python" \
  --build-arg RUNTIME_IMAGE="$BASES/debian-slim" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t localhost/ocrd:test .
built=$(date +%s)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name=ocrd-image-test-$$
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
podman run -d --name "$name" -p "127.0.0.1:$port:8080" -e OCRD_SERVER__PUBLIC_URL="http://127.0.0.1:$port" \
  localhost/ocrd:test >/dev/null
base_url="http://127.0.0.1:$port"
for _ in $(seq 120); do curl -fsS -o /dev/null "$base_url/healthz" 2>/dev/null && break; sleep 1; done
curl -fsS "$base_url/healthz" >/dev/null || { podman logs "$name"; die "the container does not answer /healthz"; }
curl -fsS "$base_url/readyz" | grep -q ready || die "/readyz is not ready"
[ "$(podman exec "$name" id -u)" = 10001 ] || die "the container does not run as uid 10001"
podman healthcheck run "$name" || die "the image's HEALTHCHECK fails"

jar=$(mktemp); trap 'cleanup; rm -f "$jar"' EXIT
curl -fsS -c "$jar" -H 'Content-Type: application/json' \
  -d '{"email":"image@example.com","password":"a long enough passphrase"}' "$base_url/api/auth/register" >/dev/null
csrf=$(curl -fsS -b "$jar" -c "$jar" -H 'Content-Type: application/json' \
  -d '{"email":"image@example.com","password":"a long enough passphrase"}' "$base_url/api/auth/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
page=$(ls ../shared/eval/public/page_*.png 2>/dev/null | head -n 1)
[ -n "$page" ] || die "no sample page found"
id=$(curl -fsS -b "$jar" -H "X-CSRF-Token: $csrf" -F "file=@$page" "$base_url/api/tasks" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
status=
for _ in $(seq 180); do
  status=$(curl -fsS -b "$jar" "$base_url/api/tasks/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case "$status" in completed|failed|cancelled) break ;; esac
  sleep 1
done
[ "$status" = completed ] || { podman logs "$name" | tail -n 20; die "the sample page ended $status"; }
words=$(curl -fsS -b "$jar" "$base_url/api/tasks/$id/result?format=txt" | wc -w)
[ "$words" -gt 20 ] || die "the sample page gave $words words"
done_at=$(date +%s)

size=$(podman image inspect localhost/ocrd:test --format '{{.Size}}')
echo "image-test: OK: bases $((bases_done - started)) s, build $((built - bases_done)) s, run checks $((done_at - built)) s;"
echo "image-test: image $((size / 1000000)) MB; a sample page through the API gave $words words"
