# Shared locations for the scripts; every one can be overridden from the environment.
export PGRX_VERSION="0.18.1"
export PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
export CDC_HEALTH_CACHE="${CDC_HEALTH_CACHE:-/var/cache/cdc_health}"
export PG15_CONFIG="${PG15_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
export PG17_WHEEL_VERSION="${PG17_WHEEL_VERSION:-17.11.0}"
export PG17_HOME="${PG17_HOME:-$CDC_HEALTH_CACHE/postgresql-17}"
# Scratch space for throwaway clusters (owned by postgres).
export CDC_HEALTH_RUN="${CDC_HEALTH_RUN:-/var/tmp/cdc_health}"
export PATH="$HOME/.cargo/bin:$PATH"
# One build cache for every checkout on the machine: a fresh clone (CI) reuses compiled deps.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CDC_HEALTH_CACHE/target}"
# PostgreSQL major versions the tests run on.
export CDC_HEALTH_PG_VERSIONS="${CDC_HEALTH_PG_VERSIONS:-15 17}"

pg_config_for() {
  case "$1" in
    15) echo "$PG15_CONFIG" ;;
    17) echo "$PG17_HOME/bin/pg_config" ;;
    *) echo "no PostgreSQL $1 on this machine (supported here: 15, 17)" >&2; return 1 ;;
  esac
}
