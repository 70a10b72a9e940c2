#!/usr/bin/env bash
# make image-test: builds the CPU image from the top-level Dockerfile with podman and runs it.
#
# No container registry is reachable from these machines, so the three base images the
# Dockerfile takes as build arguments are made here first, from Debian's packages (mmdebstrap)
# and, for Rust, this machine's rustup toolchain; they are kept between runs. Then the image is
# built (crates.io and PyPI are reachable) and run: it must answer /healthz and /readyz, run as
# uid 10001, pass its HEALTHCHECK, and recognise a sample page uploaded through the API.
#
# These machines cannot start containers: the sandbox withholds CAP_SYS_RESOURCE, and crun and
# runc both fail setting RLIMIT_NPROC. So RUN steps build with `--isolation chroot`, and the
# image is run as the container engine would, by hand: its root file system (a container's,
# writable) under chroot in new mount and PID namespaces, as the image's user, with the image's
# environment, working directory, entrypoint and command, and its HEALTHCHECK command run in it.
#
# Needs root and Debian's podman and mmdebstrap (installed when missing). Takes about a
# quarter of an hour on 2 cores the first time (the release build); the README has the figures.
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
  # This machine's extra certificate authorities too: its way out may be a TLS-inspecting
  # proxy, which crates.io and PyPI downloads in the build must trust as the host does. They
  # stay in these local test bases; the Dockerfile is built as it is.
  local trust=()
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    trust=(--customize-hook="copy-in /usr/local/share/ca-certificates /usr/local/share"
           --customize-hook='chroot "$1" update-ca-certificates >/dev/null')
  fi
  mmdebstrap --variant=apt --quiet "$@" "${trust[@]}" bookworm - "$MIRROR" |
    podman import "${CHANGES[@]}" - "$BASES/$name" >/dev/null
  CHANGES=()
}

PATH_ENV="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHANGES=(--change "$PATH_ENV" --change 'CMD ["bash"]')
base debian-slim --include=ca-certificates
CHANGES=(--change "$PATH_ENV" --change 'CMD ["python3"]')
base python --include=ca-certificates,python3,python3-pip,python3-venv
toolchain=$(readlink -f "$(rustc --print sysroot)")
[ -x "$toolchain/bin/cargo" ] || die "no cargo beside rustc in $toolchain"
CHANGES=(--change "ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
         --change "ENV CARGO_HOME=/usr/local/cargo")
base "rust-$(rustc --version | cut -d' ' -f2)" --include=ca-certificates,gcc,g++,libc6-dev,make,perl,pkg-config \
  --customize-hook="copy-in $toolchain /opt" --customize-hook="chroot \$1 mv /opt/$(basename "$toolchain") /opt/rust"
bases_done=$(date +%s)

echo "image-test: building localhost/ocrd:test"
podman build --isolation chroot --network=host --format docker \
  --build-arg RUST_IMAGE="$BASES/rust-$(rustc --version | cut -d' ' -f2)" \
  --build-arg PYTHON_IMAGE="$BASES/python" \
  --build-arg RUNTIME_IMAGE="$BASES/debian-slim" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t localhost/ocrd:test .
built=$(date +%s)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base_url="http://127.0.0.1:$port"
cid=$(podman create localhost/ocrd:test)
root=$(podman mount "$cid")
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  podman umount "$cid" >/dev/null 2>&1 || true
  podman rm -f "$cid" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The image's configuration, as a container engine reads it.
config() { podman image inspect localhost/ocrd:test --format "{{json .Config.$1}}"; }
mapfile -t env < <(config Env | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')
env+=("OCRD_SERVER__BIND=127.0.0.1:$port" "OCRD_SERVER__PUBLIC_URL=$base_url")
user=$(config User | python3 -c 'import json,sys; print(json.load(sys.stdin))')
workdir=$(config WorkingDir | python3 -c 'import json,sys; print(json.load(sys.stdin))')
mapfile -t command < <( { config Entrypoint; config Cmd; } | python3 -c 'import json,sys; [print(a) for l in sys.stdin for a in json.loads(l)]')
mapfile -t probe < <(podman image inspect localhost/ocrd:test --format '{{json .Config.Healthcheck.Test}}' |
  python3 -c 'import json,sys; t=json.load(sys.stdin); print("\n".join(t[1:]))')
[ "$user" = 10001:10001 ] || die "the image runs as '$user', not 10001:10001"
in_image() { # runs a command in the image's file system, as its user
  unshare --mount --pid --fork --kill-child sh -c '
    root=$1; shift; mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" &&
    exec chroot --userspec="$USERSPEC" "$root" /usr/bin/env -i "$@"' sh "$root" "${env[@]}" "$@"
}
export USERSPEC="$user"
in_image sh -c "cd $workdir && exec ${command[*]}" >/tmp/ocrd-image-test.log 2>&1 &
server=$!
for _ in $(seq 120); do curl -fsS -o /dev/null "$base_url/healthz" 2>/dev/null && break; sleep 1; done
curl -fsS "$base_url/healthz" >/dev/null || { tail -n 20 /tmp/ocrd-image-test.log; die "the image does not answer /healthz"; }
curl -fsS "$base_url/readyz" | grep -q ready || die "/readyz is not ready"
[ "$(in_image id -u)" = 10001 ] || die "the image's user is not uid 10001"
# The HEALTHCHECK probes 8080; here the server listens on $port, as OCRD_SERVER__BIND says.
in_image "${probe[0]}" "${probe[1]}" "${probe[2]//8080/$port}" || die "the image's HEALTHCHECK fails"

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
[ "$status" = completed ] || { tail -n 20 /tmp/ocrd-image-test.log; die "the sample page ended $status"; }
words=$(curl -fsS -b "$jar" "$base_url/api/tasks/$id/result?format=txt" | wc -w)
[ "$words" -gt 20 ] || die "the sample page gave $words words"
done_at=$(date +%s)

size=$(podman image inspect localhost/ocrd:test --format '{{.Size}}')
echo "image-test: OK: bases $((bases_done - started)) s, build $((built - bases_done)) s, run checks $((done_at - built)) s;"
echo "image-test: image $((size / 1000000)) MB; a sample page through the API gave $words words"
