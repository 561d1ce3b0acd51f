#!/usr/bin/env bash
# Released SQL scripts never change: an install script of a released version
# (cdc_health--<v>.sql) or an upgrade script into one (cdc_health--<a>--<v>.sql) must be
# byte for byte what the release's commit holds (or, for an install script committed after
# it, the commit that added it), and every release in sql/RELEASES must
# have its install script. Changes to SQL objects go into the upgrade script to the version
# under development instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
current="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
released="$(awk '!/^#/ && NF { print $1 }' sql/RELEASES)"
status=0
for v in $released; do
  [[ "$v" != "$current" ]] || { echo "sql/RELEASES lists $v, the version under development" >&2; status=1; }
  [[ -f "sql/cdc_health--$v.sql" ]] || { echo "released $v has no sql/cdc_health--$v.sql" >&2; status=1; }
done
for f in sql/cdc_health--*.sql; do
  base="${f#sql/cdc_health--}"; base="${base%.sql}"
  target="${base##*--}"
  grep -qx "$target" <<<"$released" || continue
  # Frozen as the release's commit holds it (an upgrade script grows until its release);
  # an install script generated and committed after that commit, as the commit that added it.
  release_commit="$(awk -v v="$target" '$1 == v { print $2 }' sql/RELEASES)"
  if git cat-file -e "$release_commit:$f" 2>/dev/null; then
    frozen_at="$release_commit"
  else
    frozen_at="$(git log --diff-filter=A --format=%H -- "$f" | tail -n 1)"
  fi
  if [[ -z "$frozen_at" ]]; then
    echo "$f belongs to released $target but is not committed" >&2; status=1; continue
  fi
  if ! git diff --quiet "$frozen_at" -- "$f"; then
    echo "$f belongs to released $target and was changed after ${frozen_at:0:12}; put the change into the upgrade script to $current instead:" >&2
    git --no-pager diff --stat "$frozen_at" -- "$f" >&2
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "released SQL scripts unchanged ($(echo $released | wc -w) releases)"
exit $status
