#!/usr/bin/env bash
# Builds installable packages of cdc_health into target/packages/ (under CARGO_TARGET_DIR):
#   postgresql-NN-cdc-health_<version>_amd64.deb      PGDG layout, Depends: postgresql-NN
#   cdc_health-<version>-pgNN-linux-x86_64.tar.gz     lib/, extension/ and install.sh, for
#                                                     servers not installed from packages
# Usage: scripts/package.sh [--debug] [MAJOR...]   (default: every major the tests run on;
# --debug packages the development build the tests use instead of the release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh

profile=(--release)
majors=()
for arg in "$@"; do
  case "$arg" in
    --debug) profile=(--debug) ;;
    [0-9][0-9]) majors+=("$arg") ;;
    *) echo "package.sh: unknown argument $arg (usage: package.sh [--debug] [MAJOR...])" >&2; exit 2 ;;
  esac
done
((${#majors[@]})) || read -r -a majors <<<"$CDC_HEALTH_PG_VERSIONS"
[[ "${profile[0]}" == --release ]] && profile=()  # cargo pgrx package builds release by default

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
description="$(sed -n 's/^description = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
out="$CARGO_TARGET_DIR/packages"
mkdir -p "$out"

for major in "${majors[@]}"; do
  pg_config="$(pg_config_for "$major")"
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  echo "[package] PostgreSQL $major: building" >&2
  cargo pgrx package "${profile[@]}" --pg-config "$pg_config" --out-dir "$stage/pgrx" >/dev/null
  lib="$stage/lib" ext="$stage/extension"
  mkdir -p "$lib" "$ext"
  cp "$stage/pgrx$("$pg_config" --pkglibdir)/cdc_health.so" "$lib/"
  cp "$stage/pgrx$("$pg_config" --sharedir)/extension/"cdc_health* "$ext/"
  # The frozen install scripts of released versions (pgrx copies only upgrade scripts), so
  # that every released version can still be created and updated from.
  cp sql/cdc_health--[0-9]*.sql "$ext/"
  chmod 0644 "$lib"/* "$ext"/*
  strip --strip-debug "$lib/cdc_health.so"

  # Debian package in the PGDG layout.
  deb="$stage/deb"
  install -d "$deb/DEBIAN" "$deb/usr/lib/postgresql/$major/lib" \
    "$deb/usr/share/postgresql/$major/extension" "$deb/usr/share/doc/postgresql-$major-cdc-health"
  cp "$lib/cdc_health.so" "$deb/usr/lib/postgresql/$major/lib/"
  cp "$ext"/* "$deb/usr/share/postgresql/$major/extension/"
  cp README.md CHANGELOG.md "$deb/usr/share/doc/postgresql-$major-cdc-health/"
  glibc="$(objdump -T "$lib/cdc_health.so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
  size_kb="$(du -sk --exclude=DEBIAN "$deb" | cut -f1)"
  cat >"$deb/DEBIAN/control" <<EOF
Package: postgresql-$major-cdc-health
Version: $version-1
Architecture: amd64
Maintainer: cdc_health maintainers <maintainers@cdc-health.invalid>
Depends: postgresql-$major, libc6 (>= $glibc), libgcc-s1
Section: database
Priority: optional
Installed-Size: $size_kb
Description: health of change-data-capture pipelines, for PostgreSQL $major
 $description
 .
 PostgreSQL $major extension: health of replication slots (lost, unreserved, inactive,
 stalled consumers, retained WAL against max_slot_wal_keep_size, loss forecast), alerts in
 a table and over NOTIFY, slot-creation unblocking and mirror freshness checks, with a
 background worker when preloaded. License: $license.
EOF
  (cd "$deb" && find usr -type f -exec md5sum {} + | sort -k2) >"$deb/DEBIAN/md5sums"
  dpkg-deb --root-owner-group -Zxz --build "$deb" "$out/postgresql-$major-cdc-health_${version}_amd64.deb" >/dev/null

  # Tarball with an installer for any server of this major.
  name="cdc_health-$version-pg$major-linux-x86_64"
  tree="$stage/$name"
  mkdir -p "$tree"
  cp -r "$lib" "$ext" "$tree/"
  cp README.md CHANGELOG.md "$tree/"
  sed "s/@MAJOR@/$major/; s/@VERSION@/$version/" scripts/tarball-install.sh >"$tree/install.sh"
  chmod 0755 "$tree/install.sh"
  tar --owner=0 --group=0 -czf "$out/$name.tar.gz" -C "$stage" "$name"

  rm -rf "$stage"
  trap - EXIT
  echo "[package] $out/postgresql-$major-cdc-health_${version}_amd64.deb" >&2
  echo "[package] $out/$name.tar.gz" >&2
done
ls -l "$out" >&2
