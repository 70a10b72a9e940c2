#!/usr/bin/env bash
# Brings up the services the test suite talks to and exports where they are:
#   OCRDTEST_DATABASE_URL  PostgreSQL admin URL (a database per test is cloned from a template)
#   OCRDTEST_REDIS_URL     Redis
#   OCRDTEST_S3_ENDPOINT   moto's S3 server, with OCRDTEST_KMS_KEY_ID, a KMS key made on it
# PostgreSQL and Redis on 127.0.0.1 are used when they answer; otherwise throwaway ones are
# started from the system binaries. moto always runs privately, on a free loopback port.
# Source this file; call `test_services_stop` when done (scripts/test.sh does both).

STATE="$PWD/target/test-services"
VENV="$PWD/target/test-venv"
mkdir -p "$STATE"
TEST_PIDS=()
TEST_PG_DIR=""

answers() { # host port
  python3 - "$1" "$2" <<'PY' 2>/dev/null
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
PY
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port what
  for _ in $(seq 1 120); do
    answers 127.0.0.1 "$1" && return 0
    sleep 0.5
  done
  echo "error: $2 did not come up on port $1 within 60 s" >&2
  return 1
}

need() { # message
  echo "error: $1" >&2
  return 1
}

python_env() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/moto_server" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "test services: installing moto into $VENV"
    python3 -m venv "$VENV" || need "python3 -m venv failed; install it with: apt-get install -y python3-venv" || return 1
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt || return 1
    echo "$want" > "$stamp"
  fi
}

# Debian packages the tests drive: Chromium through chromedriver (browser tests), pdftotext
# from poppler-utils (the searchable PDF's text layer), nginx (the shipped reverse-proxy
# configuration, run in front of ocrd), openssl (the TLS tests' certificates), systemd
# (systemd-analyze checks the shipped units), prometheus (promtool checks /metrics), fail2ban
# (fail2ban-regex checks the shipped filter on a real log), postgresql-client (pg_dump and
# pg_restore, for backups; pg_basebackup) and postgresql (initdb and pg_ctl, for a replica).
system_packages() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  command -v pdftotext >/dev/null || missing+=(poppler-utils)
  [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v fail2ban-regex >/dev/null || missing+=(fail2ban)
  command -v pg_restore >/dev/null || missing+=(postgresql-client)
  # initdb and pg_ctl: the read-replica test starts a primary and a streaming replica of its own.
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  [ ${#missing[@]} = 0 ] && return 0
  echo "test services: installing ${missing[*]} (Debian packages) for the tests"
  local as=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || need "the tests need Debian's ${missing[*]};
  install them as root: apt-get install -y ${missing[*]}" || return 1
    as=(sudo)
  fi
  "${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
  "${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
}

# Whether we can log in: a server on 5432 may want a password (Debian's own cluster does).
pg_login() { # url
  ! command -v psql >/dev/null || PGCONNECT_TIMEOUT=5 psql -w "$1" -Atqc 'select 1' >/dev/null 2>&1
}

start_postgres() {
  local url="${OCRDTEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if [ -n "${OCRDTEST_DATABASE_URL:-}" ] || { answers 127.0.0.1 5432 && pg_login "$url"; }; then
    export OCRDTEST_DATABASE_URL="$url"
    return 0
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bin/initdb" ] || need "no PostgreSQL on 127.0.0.1:5432 that lets user postgres in without a password,
  and no server binaries to start one. Install them with: apt-get install -y postgresql
  (or point OCRDTEST_DATABASE_URL at a server)" || return 1
  local port; port=$(free_port)
  TEST_PG_DIR=$(mktemp -d /tmp/ocrd-test-pg.XXXXXX)
  local as=()
  # initdb refuses to run as root: run the throwaway cluster as the postgres system user.
  if [ "$(id -u)" = 0 ]; then chown postgres "$TEST_PG_DIR"; as=(runuser -u postgres --); fi
  echo "test services: starting a throwaway PostgreSQL on port $port"
  "${as[@]}" "$bin/initdb" -D "$TEST_PG_DIR/data" -U postgres --auth=trust >/dev/null || return 1
  "${as[@]}" "$bin/pg_ctl" -D "$TEST_PG_DIR/data" -l "$TEST_PG_DIR/log" -w \
    -o "-p $port -k $TEST_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null || return 1
  export OCRDTEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

start_redis() {
  if answers 127.0.0.1 6379; then
    export OCRDTEST_REDIS_URL="${OCRDTEST_REDIS_URL:-redis://127.0.0.1:6379}"
    return 0
  fi
  command -v redis-server >/dev/null || need "Redis does not answer on 127.0.0.1:6379 and no server is installed.
  Install one with: apt-get install -y redis-server" || return 1
  local port; port=$(free_port)
  echo "test services: starting a throwaway Redis on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$STATE/redis.log" 2>&1 &
  TEST_PIDS+=($!)
  wait_for_port "$port" Redis || return 1
  export OCRDTEST_REDIS_URL="redis://127.0.0.1:$port"
}

start_moto() {
  local port; port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/moto.log" 2>&1 &
  TEST_PIDS+=($!)
  wait_for_port "$port" "moto (log: $STATE/moto.log)" || return 1
  export OCRDTEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  OCRDTEST_KMS_KEY_ID=$("$VENV/bin/python" - "$OCRDTEST_S3_ENDPOINT" <<'PY'
import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
print(kms.create_key(Description="ocrd tests")["KeyMetadata"]["Arn"])
PY
) || return 1
  export OCRDTEST_KMS_KEY_ID
}

# Every step may fail (a service already gone); none may stop the others.
test_services_stop() {
  local pid
  for pid in "${TEST_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$TEST_PG_DIR" ]; then
    local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    else
      "$bin/pg_ctl" -D "$TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TEST_PG_DIR" || true
  fi
}

test_services_start() {
  start_postgres && start_redis && start_moto
}
