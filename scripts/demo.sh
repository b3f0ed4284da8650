#!/usr/bin/env bash
# scripts/demo.sh: the main job on an embedded default. Brings up a real
# local control plane (kube-apiserver + etcd), profefe, two demo Go services
# as pods, and profefe-operator; applies a sample ProfilingPolicy; then shows
# `kubectl get profilingpolicies` and profefe's stored profiles as captures
# arrive. Everything listens on 127.0.0.0/8 and is stopped on exit.
#
#   ./scripts/demo.sh            run for DEMO_SECONDS (default 60), then clean up
#   ./scripts/demo.sh --keep     stay up until Ctrl-C, to explore with kubectl
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$PPOP_ROOT"

keep=false
case "${1:-}" in
--keep) keep=true ;;
"") ;;
-h | --help)
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown argument $1 (try --help)" ;;
esac
duration=${DEMO_SECONDS:-60}

ensure_debs
build_c default
ensure_tools

work=$(mktemp -d /tmp/profefe-operator-demo.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "building the demo environment runner (e2e/cmd/devenv)"
(cd e2e && go build -o "$work/devenv" ./cmd/devenv)

step "starting kube-apiserver, etcd, profefe and 2 demo pods (logs: $work/devenv.log)"
"$work/devenv" -env-file "$work/env" -targets 2 -namespace demo -dir "$work/state" >"$work/devenv.log" 2>&1 &
pids+=($!)
for i in $(seq 1 120); do
	[ -f "$work/env" ] && break
	kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$work/devenv.log"; die "the demo environment failed to start"; }
	((i % 10 == 0)) && echo "   ... still starting (${i}s): $(tail -1 "$work/devenv.log")"
	sleep 1
done
[ -f "$work/env" ] || die "the demo environment did not come up in 120s; see $work/devenv.log"
set -a
source "$work/env"
set +a
kubectl() { "$PPOP_KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
grep 'Running, podIP' "$work/devenv.log" | sed 's/^/   /'

step "installing the ProfilingPolicy and ClusterProfilingPolicy CRDs (kubectl apply -f crd/)"
kubectl apply --server-side -f crd/profilingpolicies.profefe.com.yaml \
	-f crd/clusterprofilingpolicies.profefe.com.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/profilingpolicies.profefe.com \
	crd/clusterprofilingpolicies.profefe.com >/dev/null

step "starting profefe-operator (log: $work/operator.log)"
./build/default/operator/profefe-operator --kubeconfig "$KUBECONFIG" --profefe-url "$PROFEFE_URL" \
	--metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
	--spool-dir "$work/spool" --spread-window 1s >"$work/operator.log" 2>&1 &
pids+=($!)

step "applying a sample policy: every 10s, a 3s CPU profile plus heap, goroutine and mutex"
cat <<'EOF' | tee "$work/policy.yaml" | sed 's/^/   /'
apiVersion: profefe.com/v1alpha1
kind: ProfilingPolicy
metadata:
  name: demo
spec:
  schedule: "@every 10s"
  selector:
    matchLabels:
      app: demo
  profiles:
  - type: cpu
    seconds: 3
  - type: heap
  - type: goroutine
  - type: mutex
  labels:
    env: demo
EOF
kubectl apply -n demo -f "$work/policy.yaml"

profefe_count() { # profefe_count TYPE -> number of stored profiles of service "demo"
	local from to
	from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%S)
	to=$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%S)
	curl -s "$PROFEFE_URL/api/0/profiles?service=demo&type=$1&from=$from&to=$to&limit=1000" |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("body") or []))' 2>/dev/null || echo 0
}

step "watching captures arrive (kubectl get profilingpolicies -n demo), ${duration}s"
end=$((SECONDS + duration))
while $keep || ((SECONDS < end)); do
	kill -0 "${pids[1]}" 2>/dev/null || { tail -20 "$work/operator.log"; die "the operator exited"; }
	echo
	date -u +'   %H:%M:%S UTC'
	kubectl get profilingpolicies -n demo | sed 's/^/   /'
	echo "   profefe now holds: cpu=$(profefe_count cpu) heap=$(profefe_count heap) goroutine=$(profefe_count goroutine) mutex=$(profefe_count mutex)"
	sleep 10
done

step "what the operator recorded (kubectl describe profilingpolicy demo -n demo)"
kubectl describe profilingpolicy demo -n demo | sed 's/^/   /'
step "the operator's log (last lines; -v 1 would also log every stored profile)"
tail -5 "$work/operator.log" | sed 's/^/   /'
step "query profefe yourself"
cat <<EOF
   curl "$PROFEFE_URL/api/0/profiles?service=demo&type=heap&from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%S)&to=$(date -u +%Y-%m-%dT%H:%M:%S)"
   (the environment is stopped now; run ./scripts/demo.sh --keep to explore while it runs)
EOF
