#!/usr/bin/env bash
# Runs the profefe-operator benchmarks (DESIGN.md §10) and prints a report of
# ratios against baselines measured in the same run. See bench/README.md.
#
# Usage: bench/run.sh [--pods N] [--seconds S] [--rss-pods N] [--rss-policies N]
#                     [--concurrency N] [--types heap,goroutine|none] [--load 0.8,1.2]
#                     [--warmup S] [--operator-flags "--max-inflight 16"]
#                     [--base-operator PATH] [--perf] [-- bench flags]
#                     [--jitter-pods N] [--jitter-others N] [--jitter-other-pods N] [--hostile-pods N]
#                     [--jitter-mode shared,own]
#                     [--timeout 20m] [--workers 32]
#
# --timeout caps the whole run (default 20m; 100,000 pods + 10,000
# policies need about 90m). --workers is how many API requests at a time
# create the pods and policies (default 32).
#
# --types jitter (alone or with others) adds the capture-start jitter run:
# one goroutine policy on "@every 1s" over --jitter-pods pods plus
# --jitter-others policies on the same boundary; see bench/README.md.
#
# --perf records every operator window with perf(1) (attached to the
# process) into bench/out/perf-<date>/ and prints the top libraries and
# symbols under the report.
#
# --kprofefe-src DIR builds kube-profefe's kprofefe from a checkout in DIR
# (bench/kprofefe/build.sh) and runs it once beside one operator round.
#
# Environment: PPOP_OPERATOR (operator binary; default build/ci, else
# build/default, built with cmake if missing), PPOP_CACHE, PPOP_* (see
# e2e/README.md). The report goes to bench/out/report-<date>.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
log() { echo "run.sh: $*" >&2; }

args=()
kpsrc=
perf=
while (($#)); do
  case "$1" in
    --pods | --seconds | --rss-pods | --rss-policies | --concurrency | --types | --warmup | --load | --operator-flags | --base-operator | --jitter-pods | --jitter-others | --jitter-other-pods | --jitter-mode | --timeout | --workers | --hostile-pods)
      (($# >= 2)) || { log "$1 needs a value"; exit 2; }
      args+=("-${1#--}" "$2")
      shift 2
      ;;
    --pods=* | --seconds=* | --rss-pods=* | --rss-policies=* | --concurrency=* | --types=* | --warmup=* | --load=* | --operator-flags=* | --base-operator=* | --jitter-pods=* | --jitter-others=* | --jitter-other-pods=* | --jitter-mode=* | --timeout=* | --workers=* | --hostile-pods=*)
      args+=("-${1#--}")
      shift
      ;;
    --perf)
      command -v perf >/dev/null || { log "--perf needs perf(1) (apt package linux-perf)"; exit 1; }
      perf=1
      shift
      ;;
    --kprofefe-src)
      (($# >= 2)) || { log "$1 needs a value"; exit 2; }
      kpsrc=$2
      shift 2
      ;;
    --kprofefe-src=*)
      kpsrc=${1#*=}
      shift
      ;;
    -h | --help)
      sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    --)
      shift
      args+=("$@")
      break
      ;;
    *)
      log "unknown argument: $1 (try --help)"
      exit 2
      ;;
  esac
done

command -v go >/dev/null || { log "go is not installed"; exit 1; }

# 1. The real parts (kube-apiserver, etcd, kubectl, profefe), built once per machine.
log "checking the e2e binaries (e2e/tools/build.sh; ~10 min the first time on 2 cores)"
eval "$("$root/e2e/tools/build.sh" --print-env)"
export PPOP_KUBE_APISERVER PPOP_ETCD PPOP_KUBECTL PPOP_PROFEFE

# 2. The operator.
op=${PPOP_OPERATOR:-}
if [[ -z "$op" ]]; then
  for d in ci default; do
    if [[ -x "$root/build/$d/operator/profefe-operator" ]]; then
      op=$root/build/$d/operator/profefe-operator
      break
    fi
  done
fi
if [[ -z "$op" ]]; then
  log "no operator binary in build/ci or build/default: building the default preset (cmake + ninja)"
  (cd "$root" && cmake --preset default >&2 && cmake --build --preset default --target profefe-operator >&2)
  op=$root/build/default/operator/profefe-operator
fi
[[ -x "$op" ]] || { log "operator binary $op is missing"; exit 1; }
op=$(cd "$(dirname "$op")" && pwd)/$(basename "$op") # the driver runs in bench/
log "operator: $op (built $(date -u -r "$op" +%Y-%m-%dT%H:%MZ))"

# 3. The bench programs (relay and driver), into bench/out/bin.
mkdir -p "$here/out/bin"
log "building bench/relay and bench/cmd/bench"
(cd "$here" && CGO_ENABLED=0 go build -buildvcs=false -o "$here/out/bin/" ./relay ./cmd/bench)

# 4. kube-profefe's kprofefe, from the checkout --kprofefe-src names.
if [[ -n "$kpsrc" ]]; then
  "$here/kprofefe/build.sh" "$kpsrc" "$here/out/bin/kprofefe"
  args+=(-kprofefe "$here/out/bin/kprofefe")
fi

# The harness builds pproftarget into the cache on first use (a few seconds).
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report=$here/out/report-$stamp.txt
[[ -z "$perf" ]] || args+=(-perf "$here/out/perf-$stamp")
log "running; report -> $report"
cd "$here"
"$here/out/bin/bench" -operator "$op" -relay "$here/out/bin/relay" -out "$report" "${args[@]}"
