#!/usr/bin/env bash
# Builds a released version of cdc_health from its commit (sql/RELEASES) for one PostgreSQL
# major, once per machine, and prints the directory holding its lib/ and extension/ files.
# The upgrade test loads that library to create the old version with real state.
#   scripts/build-release.sh 0.1.0 15
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
version="${1:?usage: build-release.sh VERSION MAJOR}"
major="${2:?usage: build-release.sh VERSION MAJOR}"
commit="$(awk -v v="$version" '$1 == v { print $2 }' sql/RELEASES)"
[[ -n "$commit" ]] || { echo "build-release.sh: $version is not in sql/RELEASES" >&2; exit 2; }
majors="$(awk -v v="$version" '$1 == v { print $4 }' sql/RELEASES)"
[[ ",$majors," == *",$major,"* ]] || {
  echo "build-release.sh: $version was released for PostgreSQL $majors, not $major" >&2; exit 2; }
pg_config="$(pg_config_for "$major")"
out="$CDC_HEALTH_CACHE/releases/$version-${commit:0:12}/pg$major"
if [[ ! -f "$out/built" ]]; then
  src="$CDC_HEALTH_CACHE/releases/src-$version-${commit:0:12}"
  if [[ ! -f "$src/Cargo.toml" ]]; then
    rm -rf "$src" && mkdir -p "$src"
    git archive "$commit" | tar -x -C "$src"
  fi
  stage="$out.stage"
  rm -rf "$stage" "$out"
  echo "[build-release] building $version ($commit) for PostgreSQL $major" >&2
  # Its own target directory: the old crate's cdylib has the same name as the current one.
  (cd "$src" && CARGO_TARGET_DIR="$CDC_HEALTH_CACHE/target-releases" \
    cargo pgrx package --debug --pg-config "$pg_config" --out-dir "$stage" >&2)
  mkdir -p "$out"
  mv "$stage$("$pg_config" --pkglibdir)" "$out/lib"
  mv "$stage$("$pg_config" --sharedir)/extension" "$out/extension"
  rm -rf "$stage"
  touch "$out/built"
fi
echo "$out"
