#!/usr/bin/env bash
# Builds the real parts the e2e tests run against, once per machine, into a
# cache folder:
#
#   $PPOP_CACHE/k8s-v1.34.4/{kube-apiserver,etcd,kubectl}   from e2e/tools/k8s
#   $PPOP_CACHE/profefe-<version>/profefe                  from e2e/tools/profefe
#   $PPOP_CACHE/k8s-node-v1.34.4/{kubelet,kube-controller-manager,kube-scheduler,kube-proxy}
#                                      from e2e/tools/k8s, only with --node
#
# PPOP_CACHE defaults to ~/.cache/profefe-operator. A folder whose stamp
# (versions, go.mod/go.sum hash, Go version, build flags) matches is reused as
# is. Each folder is built under a temporary name and renamed when complete,
# so an interrupted build never leaves a broken cache behind.
#
# Usage:
#   e2e/tools/build.sh              build what is missing
#   e2e/tools/build.sh --node       also the node parts the real-node suite runs
#   e2e/tools/build.sh --print-env  build what is missing, then print
#                                   "export PPOP_...=..." lines on stdout
#                                   (progress goes to stderr), e.g.
#                                   eval "$(e2e/tools/build.sh --print-env)"
#                                   (with --node too: PPOP_KUBELET etc.)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PPOP_CACHE:-$HOME/.cache/profefe-operator}

print_env=false
node=false
for arg in "$@"; do
  case "$arg" in
    --print-env) print_env=true ;;
    --node) node=true ;;
    -h | --help)
      sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build.sh: unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

log() { echo "build.sh: $*" >&2; }

command -v go >/dev/null || {
  log "go is not installed (need Go >= 1.24 for the tool directive)"
  exit 1
}

export CGO_ENABLED=0
case " ${GOFLAGS:-} " in
  *-buildvcs*) ;;
  *) export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" ;;
esac

# Versions come from the wrapper modules, so go.mod stays the one place to pin.
modver() { # modver DIR MODULE -> version required in DIR/go.mod
  awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}
k8s_version=$(modver "$here/k8s" k8s.io/kubernetes)
profefe_version=$(modver "$here/profefe" github.com/profefe/profefe)
[[ -n "$k8s_version" && -n "$profefe_version" ]] || {
  log "cannot read pinned versions from $here/{k8s,profefe}/go.mod"
  exit 1
}
k8s_minor=${k8s_version#v1.}
k8s_minor=${k8s_minor%%.*}

k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
done
profefe_ldflags="-s -w -X github.com/profefe/profefe/version.version=$profefe_version"

k8s_dir=$cache/k8s-$k8s_version
node_dir=$cache/k8s-node-$k8s_version
profefe_dir=$cache/profefe-$profefe_version

emit_env() {
  printf 'export PPOP_KUBE_APISERVER=%q\n' "$k8s_dir/kube-apiserver"
  printf 'export PPOP_ETCD=%q\n' "$k8s_dir/etcd"
  printf 'export PPOP_KUBECTL=%q\n' "$k8s_dir/kubectl"
  printf 'export PPOP_PROFEFE=%q\n' "$profefe_dir/profefe"
  if $node; then
    printf 'export PPOP_KUBELET=%q\n' "$node_dir/kubelet"
    printf 'export PPOP_KUBE_CONTROLLER_MANAGER=%q\n' "$node_dir/kube-controller-manager"
    printf 'export PPOP_KUBE_SCHEDULER=%q\n' "$node_dir/kube-scheduler"
    printf 'export PPOP_KUBE_PROXY=%q\n' "$node_dir/kube-proxy"
  fi
}

stamp_of() { # stamp_of MODDIR LDFLAGS VERSION
  {
    echo "version=$3"
    echo "go=$(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"
    echo "ldflags=$2"
    echo "mod=$(cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -d' ' -f1)"
  }
}

fresh() { # fresh DIR STAMP BIN...: is DIR complete and built from the same inputs?
  local dir=$1 stamp=$2 b
  shift 2
  [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" ]] || return 1
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

tmp=""
build_pid=""
cleanup() {
  if [[ -n "$build_pid" ]]; then kill "$build_pid" 2>/dev/null || true; fi
  if [[ -n "$tmp" ]]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'log "interrupted; nothing half-built is kept"; exit 130' INT TERM

# build LABEL MODDIR DESTDIR LDFLAGS STAMP PKG... : go build -v with a progress
# line every 20 s, into a temporary folder renamed to DESTDIR when complete.
build() {
  local label=$1 moddir=$2 dest=$3 ldflags=$4 stamp=$5
  shift 5
  local start total n now last=0 rc=0
  start=$(date +%s)
  log "building $label from $moddir"
  log "  (a cold build compiles from source: kube-apiserver+etcd+kubectl take ~10 min on 2 cores;"
  log "   with a warm Go build cache it only links; later runs reuse $dest as is)"
  log "  resolving packages (downloads modules from the Go module proxy the first time)..."
  total=$(cd "$moddir" && go list -deps "$@" 9>&- | sort -u | wc -l)
  log "  $total packages to compile or take from the Go build cache"

  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.build-$(basename "$dest").XXXXXX")
  chmod 755 "$tmp"
  (cd "$moddir" && exec go build -v -ldflags "$ldflags" -o "$tmp/" "$@") >"$tmp/.log" 2>&1 9>&- &
  build_pid=$!
  while kill -0 "$build_pid" 2>/dev/null; do
    sleep 1
    now=$(date +%s)
    if ((now - last >= 20)); then
      if ((last > 0)); then
        n=$(grep -cv -e '^go: ' -e '^#' "$tmp/.log" || true)
        log "  building $label: $n/$total packages compiled, $(fmt_secs $((now - start))) elapsed"
      fi
      last=$now
    fi
  done
  wait "$build_pid" || rc=$?
  build_pid=""
  if ((rc != 0)); then
    log "building $label FAILED (exit $rc); go build output:"
    grep -v -e '^go: downloading' "$tmp/.log" | tail -50 >&2
    exit "$rc"
  fi
  rm -f "$tmp/.log"
  if [[ -x "$tmp/server" ]]; then mv "$tmp/server" "$tmp/etcd"; fi # go.etcd.io/etcd/server/v3
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$dest"
  mv -T "$tmp" "$dest"
  tmp=""
  log "built $label in $(fmt_secs $(($(date +%s) - start))): $(cd "$dest" && echo *)"
}

mkdir -p "$cache"
# One build at a time per cache folder (e.g. two test packages starting at once).
exec 9>"$cache/.lock"
if ! flock -n 9; then
  log "another build.sh is building into $cache; waiting for it..."
  flock 9
fi

t0=$(date +%s)
built=false

k8s_stamp=$(stamp_of "$here/k8s" "$k8s_ldflags" "$k8s_version")
if fresh "$k8s_dir" "$k8s_stamp" kube-apiserver etcd kubectl; then
  $print_env || log "kube-apiserver, etcd, kubectl $k8s_version: up to date in $k8s_dir"
else
  build "kube-apiserver, etcd, kubectl $k8s_version" "$here/k8s" "$k8s_dir" "$k8s_ldflags" "$k8s_stamp" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3
  built=true
fi

profefe_stamp=$(stamp_of "$here/profefe" "$profefe_ldflags" "$profefe_version")
if fresh "$profefe_dir" "$profefe_stamp" profefe; then
  $print_env || log "profefe $profefe_version: up to date in $profefe_dir"
else
  build "profefe $profefe_version" "$here/profefe" "$profefe_dir" "$profefe_ldflags" "$profefe_stamp" \
    github.com/profefe/profefe/cmd/profefe
  built=true
fi

if $node; then
  # The same wrapper module and flags as kube-apiserver, so the node runs
  # exactly the version of the control plane (a second stamp: its own folder).
  node_stamp=$(stamp_of "$here/k8s" "$k8s_ldflags" "$k8s_version")
  if fresh "$node_dir" "$node_stamp" kubelet kube-controller-manager kube-scheduler kube-proxy; then
    $print_env || log "kubelet, kube-controller-manager, kube-scheduler, kube-proxy $k8s_version: up to date in $node_dir"
  else
    build "kubelet, kube-controller-manager, kube-scheduler, kube-proxy $k8s_version" "$here/k8s" "$node_dir" \
      "$k8s_ldflags" "$node_stamp" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
    built=true
  fi
fi

if $built; then log "all built in $(fmt_secs $(($(date +%s) - t0)))"; fi
if $print_env; then emit_env; fi
