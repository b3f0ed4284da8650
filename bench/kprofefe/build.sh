#!/usr/bin/env bash
# Builds kube-profefe's kprofefe from a checkout you supply, with the
# dependency versions this module pins (go.mod, go.sum: kube-profefe's own
# build list). Nothing of kube-profefe is committed here; see bench/README.md.
#
# Usage: bench/kprofefe/build.sh SRC_DIR OUT_BINARY
#
# Get the source (the commit the bench was measured with):
#   git clone https://github.com/gianarb/kube-profefe SRC_DIR && git -C SRC_DIR checkout 2d933a0a63ba
#
# The replace (github.com/gianarb/kube-profefe => SRC_DIR) is applied in a
# temporary copy of this module, built with GOFLAGS=-mod=mod and the usual Go
# build and module caches. The first build downloads about 60 modules from
# the Go module proxy (kube-profefe itself is not served there).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "kprofefe/build.sh: $*" >&2; }
(($# == 2)) || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
src=$(cd "$1" && pwd) || { log "no such directory: $1"; exit 1; }
out=$2
mod=github.com/gianarb/kube-profefe

[[ -f "$src/go.mod" && -d "$src/cmd/kprofefe" ]] &&
  grep -q "^module $mod\$" "$src/go.mod" ||
  { log "$src is not a checkout of $mod (no go.mod for it, or no cmd/kprofefe)"; exit 1; }

# The commit go.mod pins: the last 12 hex digits of the pseudo-version.
pin=$(sed -n "s|^require $mod v.*-\([0-9a-f]\{12\}\)\$|\1|p" "$here/go.mod")
if have=$(git -C "$src" rev-parse HEAD 2>/dev/null); then
  [[ "$have" == "$pin"* ]] || log "warning: $src is at ${have:0:12}, the pinned commit is $pin"
  [[ -z "$(git -C "$src" status --porcelain 2>/dev/null)" ]] || log "warning: $src has local changes"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/go.mod" "$here/go.sum" "$here/tools.go" "$tmp/"
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
cd "$tmp"
go mod edit -replace "$mod=$src"
log "building $mod/cmd/kprofefe from $src -> $out"
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -buildvcs=false -trimpath -o "$out" "$mod/cmd/kprofefe"
