#!/usr/bin/env bash
# capture/tests/run_integration.sh: runs cap_integration's scenarios against a
# real profefe and real Go pprof targets, all on 127.0.0.0/8.
#
#   PPOP_PROFEFE=/path/to/profefe [PPOP_PPROFTARGET=/path/to/pproftarget] \
#     capture/tests/run_integration.sh build/ci/capture/cap_integration [SCENARIO...]
#
# PPOP_PROFEFE is what e2e/tools/build.sh --print-env exports. Without
# PPOP_PPROFTARGET the target is built from e2e/cmd/pproftarget. Scenarios
# default to all: types hostile outage outage-small kill-restart.
set -euo pipefail

self=$(cd -P "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/../.." && pwd)

# Internal: start/stop profefe for the driver (CAP_IT_START/CAP_IT_STOP).
case "${1:-}" in
__start)
  dir=$2 addr=$3
  "$PPOP_PROFEFE" -addr "$addr" -storage-type badger -badger.dir "$dir/badger" \
    -log.level warn >>"$dir/profefe.log" 2>&1 &
  echo $! >"$dir/profefe.pid"
  for _ in $(seq 1 100); do
    curl -fsS "http://$addr/api/0/version" >/dev/null 2>&1 && exit 0
    sleep 0.1
  done
  echo "profefe did not start" >&2
  exit 1
  ;;
__stop)
  dir=$2
  pid=$(cat "$dir/profefe.pid")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  exit 0
  ;;
esac

driver=${1:?usage: run_integration.sh PATH/TO/cap_integration [SCENARIO...]}
shift
scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(types hostile outage outage-small kill-restart)
: "${PPOP_PROFEFE:?set PPOP_PROFEFE to a profefe binary (e2e/tools/build.sh --print-env)}"
export PPOP_PROFEFE

tmp=$(mktemp -d /tmp/cap-it-XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # profefe is not our child (the driver starts it too): wait until it is gone.
  [[ -f $tmp/profefe.pid ]] && "$self" __stop "$tmp" || true
  wait 2>/dev/null || true
  rm -rf "$tmp" || true
  exit $rc
}
trap cleanup EXIT

if [[ -z "${PPOP_PPROFTARGET:-}" ]]; then
  (cd "$repo/e2e" && go build -o "$tmp/pproftarget" ./cmd/pproftarget)
  PPOP_PPROFTARGET=$tmp/pproftarget
fi

port=$((20000 + RANDOM % 20000))
net=127.0.$((100 + RANDOM % 100))
pf_addr=127.0.0.1:$((port + 1))
# start_target VAR IP-SUFFIX ARGS...: starts a target and exports VAR=ip:port.
# It must run in this shell, not in $(...), or its pid would be recorded in
# a subshell and cleanup could not stop it.
start_target() {
  local var=$1 ip=$net.$2
  shift 2
  "$PPOP_PPROFTARGET" -addr "$ip:$port" "$@" >"$tmp/$var.log" 2>&1 &
  pids+=($!)
  export "$var=$ip:$port"
}
start_target CAP_IT_TARGET 1 -mutex -block -cpu 0.2
start_target CAP_IT_PLAIN 2
start_target CAP_IT_SLOW 3 -mode slow -slow-rate 64
start_target CAP_IT_HUNG 4 -mode hung
start_target CAP_IT_GARBAGE 5 -mode garbage
start_target CAP_IT_HUGE 6 -mode huge
start_target CAP_IT_500 7 -mode 500
start_target CAP_IT_WT 8 -write-timeout 2s -legacy-write-timeout
export CAP_IT_DEAD=$net.9:$port
export CAP_IT_PROFEFE=http://$pf_addr
export CAP_IT_START="'$self' __start '$tmp' '$pf_addr'"
export CAP_IT_STOP="'$self' __stop '$tmp'"

for a in "$CAP_IT_TARGET" "$CAP_IT_PLAIN" "$CAP_IT_WT"; do
  for _ in $(seq 1 100); do
    curl -fsS "http://$a/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
sleep 1 # let the hostile ones bind too
"$self" __start "$tmp" "$pf_addr"

rc=0
for s in "${scenarios[@]}"; do
  case $s in
  kill-restart)
    export CAP_IT_SPOOL=$tmp/spool-kill CAP_IT_RUN=kill-$$-$RANDOM
    "$self" __stop "$tmp"
    set +e
    "$driver" spool-and-die
    code=$?
    set -e
    [[ $code -eq 137 ]] || { echo "spool-and-die exited $code, want 137 (SIGKILL)"; rc=1; }
    echo "  spool left behind: $(ls "$CAP_IT_SPOOL" | wc -l) files"
    "$self" __start "$tmp" "$pf_addr"
    "$driver" drain || rc=1
    ;;
  outage | outage-small)
    export CAP_IT_SPOOL=$tmp/spool-$s CAP_IT_RUN=$s-$$-$RANDOM
    "$driver" "$s" || rc=1
    ;;
  *)
    unset CAP_IT_RUN
    "$driver" "$s" || rc=1
    ;;
  esac
done
exit $rc
