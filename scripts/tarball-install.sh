#!/bin/sh
# Installs cdc_health @VERSION@ for PostgreSQL @MAJOR@ into the server that PG_CONFIG names
# (default: the first pg_config on PATH). Run as a user who may write there (often root).
#   ./install.sh [--uninstall] [PG_CONFIG]
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
action=install
if [ "${1:-}" = "--uninstall" ]; then action=uninstall; shift; fi
pg_config="${1:-${PG_CONFIG:-pg_config}}"
command -v "$pg_config" >/dev/null 2>&1 || { echo "install.sh: no pg_config at '$pg_config'; pass its path" >&2; exit 2; }
major="$("$pg_config" --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')"
if [ "$major" != "@MAJOR@" ]; then
  echo "install.sh: this package is for PostgreSQL @MAJOR@, but $pg_config is PostgreSQL $major" >&2
  exit 2
fi
libdir="$("$pg_config" --pkglibdir)"
extdir="$("$pg_config" --sharedir)/extension"
case "$action" in
  install)
    for f in "$here"/lib/*; do install -m 0755 "$f" "$libdir/"; echo "$libdir/$(basename "$f")"; done
    for f in "$here"/extension/*; do install -m 0644 "$f" "$extdir/"; echo "$extdir/$(basename "$f")"; done
    echo "cdc_health @VERSION@ installed; add it to shared_preload_libraries for the worker (restart)" >&2 ;;
  uninstall)
    for f in "$here"/lib/*; do rm -f "$libdir/$(basename "$f")"; done
    for f in "$here"/extension/*; do rm -f "$extdir/$(basename "$f")"; done
    echo "cdc_health @VERSION@ removed from $libdir and $extdir" >&2 ;;
esac
