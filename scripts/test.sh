#!/usr/bin/env bash
# scripts/test.sh: runs every test: C unit tests (normal and ASan+UBSan
# builds), every libFuzzer target for 10 s, then a gcov build whose line
# coverage per folder must stay at or above scripts/coverage-floors.txt,
# then the end-to-end tests against a real kube-apiserver, etcd, kubectl,
# profefe and Go pprof programs. Installs and builds what is missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$PPOP_ROOT"

ensure_debs

# Processes of the kinds the tests start that were already running (a demo,
# say) are not ours; the leftover check at the end ignores them.
leftover_pattern="$PPOP_CACHE/|pproftarget|profefe-operator --|kube_integ_|cap_integration"
preexisting=$(pgrep -f "$leftover_pattern" | sort || true)

step "checking that the C tree is formatted (clang-format, .clang-format)"
find common loop kube reconcile capture operator kubectl-profefe -name '*.[ch]' -print0 |
	xargs -0 clang-format --dry-run --Werror
step "checking that the ClusterProfilingPolicy CRD is generated from the ProfilingPolicy CRD"
python3 scripts/gen-cluster-crd.py --check
# The real parts first: with PPOP_PROFEFE set at configure time, CTest also
# registers capture/'s integration test against the real profefe.
ensure_tools

build_c ci
step "unit tests (ctest, preset ci)"
ctest --preset ci

build_c asan-ubsan
step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
ctest --preset asan-ubsan

step "fuzz targets, 10 s each over their seed corpora (preset fuzz, libFuzzer + ASan + UBSan)"
fuzz_smoke 10

build_c coverage
step "unit tests again, built with gcc --coverage (preset coverage), to measure line coverage"
# Counts left by an earlier run would add to this one's.
find build/coverage -name '*.gcda' -delete
ctest --preset coverage
step "line coverage of the unit tests per folder (gcovr; tests/ and fuzz/ not counted; floors: scripts/coverage-floors.txt, column unit)"
check_coverage build/coverage unit

# The end-to-end suite runs the coverage build's binaries, so what the real
# parts exercise (the operator's and the plugin's I/O wiring) is counted too.
step "end-to-end tests (go test ./... in e2e/, real parts on 127.0.0.0/8, binaries of the coverage build)"
export PPOP_BUILD_DIR=$PPOP_ROOT/build/coverage
(cd e2e && go vet ./... && go test -count=1 -timeout 40m ./...)

step "line coverage of the unit and end-to-end tests per folder (floors: scripts/coverage-floors.txt, column all)"
check_coverage build/coverage all

# The operator itself under the sanitizers, driven by the operator suites:
# a memory error or undefined behaviour aborts it and fails the test.
step "end-to-end operator tests again, the operator built with AddressSanitizer + UBSan"
(cd e2e && PPOP_BUILD_DIR=$PPOP_ROOT/build/asan-ubsan go test -count=1 -timeout 20m \
	-run 'TestOperator$|TestOperatorCore|TestOperatorResilience|TestOperatorFailover' ./)

real_node_suite

step "checking that no test process was left behind"
sleep 1
left=$(comm -13 <(printf '%s\n' "$preexisting") <(pgrep -f "$leftover_pattern" | sort || true) | grep . || true)
if [ -n "$left" ]; then
	ps -o pid,etime,args -p "$(echo $left | tr ' ' ,)" || true
	die "processes were left behind"
fi
step "all tests passed"
