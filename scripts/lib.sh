# scripts/lib.sh: helpers shared by the top-level scripts. Sourced, not run.

PPOP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PPOP_CACHE=${PPOP_CACHE:-$HOME/.cache/profefe-operator}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
PPOP_T0=$(date +%s)

step() { printf '\n==> [%s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - PPOP_T0 ))" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages the C build and the tests need. Installed only when missing,
# so a warm machine spends no time here.
PPOP_DEBS=(build-essential cmake ninja-build pkg-config libcurl4-openssl-dev libjson-c-dev
	libyaml-dev libssl-dev zlib1g-dev libcmocka-dev clang-format gcovr iproute2 procps curl
	clang libclang-rt-dev)

ensure_debs() {
	local missing=() p
	for p in "${PPOP_DEBS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		step "installing Debian packages: ${missing[*]}"
		local sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	command -v go >/dev/null || die "Go is required (1.24 or newer); see README"
}

# build_c PRESET: configure and build the C tree with a CMake preset.
build_c() {
	local preset=$1
	step "building the C tree (preset $preset)"
	cmake --preset "$preset" >/dev/null
	cmake --build --preset "$preset"
}

# fuzz_smoke SECONDS: builds the fuzz preset (clang, libFuzzer) and runs
# every target for SECONDS, two at a time, over its seed corpus
# (<module>/fuzz/corpus/<name> for a binary <prefix>fuzz_<name>). New inputs
# go to a scratch directory, never into the tree. A target without a corpus,
# or a source without a target, fails the step.
fuzz_smoke() {
	local secs=$1 src bins=() b n scratch
	build_c fuzz
	for b in build/fuzz/*/*fuzz_*; do
		[ -x "$b" ] && [ -f "$b" ] && bins+=("$b")
	done
	n=$(grep -rl --include='*.c' LLVMFuzzerTestOneInput common loop kube reconcile capture operator kubectl-profefe | wc -l)
	((${#bins[@]} == n)) || die "$n fuzz sources but ${#bins[@]} fuzz targets in build/fuzz"
	scratch=$(mktemp -d)
	for b in "${bins[@]}"; do
		src=$(basename "$(dirname "$b")")/fuzz/corpus/${b##*fuzz_}
		[ -d "$src" ] || die "no seed corpus $src for $b"
		printf '%s %s %s/%s\n' "$b" "$src" "$scratch" "${b##*/}"
	done | xargs -P 2 -L 1 bash -c 'mkdir -p "$2" && "$0" "$2" "$1" -max_total_time='"$secs"' \
		-rss_limit_mb=2048 -artifact_prefix="$2/" >"$2.log" 2>&1 \
		|| { tail -n 40 "$2.log"; echo "error: $0 failed (inputs kept in $2)"; exit 255; }
		printf "%-45s %s\n" "$0" "$(grep -a "^Done [0-9]* runs" "$2.log")"'
	rm -rf "$scratch"
}

# ensure_tools: builds kube-apiserver, etcd, kubectl and profefe once per
# machine (a cold build takes many minutes and prints its progress).
ensure_tools() {
	step "real control plane and profefe (built once per machine into $PPOP_CACHE)"
	"$PPOP_ROOT/e2e/tools/build.sh"
	eval "$("$PPOP_ROOT/e2e/tools/build.sh" --print-env)"
}

# check_coverage BUILD_DIR: prints the line coverage of each folder of the C
# tree and of the whole tree, from the gcov data the tests left in BUILD_DIR
# (a --coverage build), counting no tests/ or fuzz/ source. Fails, naming the
# folder, when one is below its floor in scripts/coverage-floors.txt, the one
# place the floors are written.
# check_coverage BUILD_DIR COLUMN: prints line coverage per folder of what
# ran in BUILD_DIR (gcovr) and fails when a folder is below its floor in
# column COLUMN (unit or all) of scripts/coverage-floors.txt.
check_coverage() {
	local dir=$1 column=$2 summary=$1/coverage-summary.json
	gcovr --root "$PPOP_ROOT" --object-directory "$dir" \
		--exclude-directories '.*/CMakeFiles/[0-9.]+/CompilerId' \
		--exclude '(.*/)?tests/' --exclude '(.*/)?fuzz/' --exclude '(build|e2e|bench)/' \
		--json-summary "$summary" >/dev/null || die "gcovr failed on $dir"
	python3 - "$summary" "$PPOP_ROOT/scripts/coverage-floors.txt" "$column" <<'EOF'
import collections, json, sys

summary, floors_path, column = sys.argv[1], sys.argv[2], sys.argv[3]
col = {"unit": 1, "all": 2}[column]
floors = {}
with open(floors_path) as f:
    for line in f:
        fields = line.split("#", 1)[0].split()
        if fields:
            floors[fields[0].rstrip("/")] = float(fields[col])
lines = collections.defaultdict(lambda: [0, 0])  # folder -> [covered, total]
for f in json.load(open(summary))["files"]:
    folder = f["filename"].split("/")[0] if "/" in f["filename"] else "."
    for key in (folder, "tree"):
        lines[key][0] += f["line_covered"]
        lines[key][1] += f["line_total"]
order = [k for k in floors if k != "tree"]
order += sorted(k for k in lines if k not in floors and k != "tree") + ["tree"]
print("%-16s %7s %7s %8s %6s" % ("folder", "lines", "covered", "percent", "floor"))
failed = []
for k in order:
    covered, total = lines[k]
    name = "whole C tree" if k == "tree" else k + "/"
    floor = floors.get(k)
    pct = 100.0 * covered / total if total else 0.0
    print("%-16s %7d %7d %7.1f%% %6s" % (name, total, covered, pct,
          "-" if floor is None else "%g%%" % floor))
    if floor is not None and (total == 0 or pct < floor):
        failed.append("line coverage of %s is %.1f%% (%d of %d lines), below its floor of %g%%"
                      % (name, pct, covered, total, floor))
for msg in failed:
    print("error: %s (floors: scripts/coverage-floors.txt, column %s)" % (msg, column),
          file=sys.stderr)
sys.exit(1 if failed else 0)
EOF
}

# The real-node suite's Debian packages (containerd, runc, the CNI plugins,
# iptables for kube-proxy). Installed only when missing.
PPOP_NODE_DEBS=(containerd runc containernetworking-plugins iptables util-linux python3 binutils)

# real_node_suite: the operator's image and the e2e images (scripts/image.sh
# --e2e), the node binaries (build.sh --node), then TestRealNode: etcd,
# kube-apiserver, containerd, kubelet and the operator as real pods, in a
# network namespace the test creates. A skip is printed with its reason.
real_node_suite() {
	local missing=() p log rc=0
	for p in "${PPOP_NODE_DEBS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		step "installing Debian packages for the real node: ${missing[*]}"
		local sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	step "kubelet, kube-controller-manager, kube-scheduler, kube-proxy (built once per machine into $PPOP_CACHE)"
	eval "$("$PPOP_ROOT/e2e/tools/build.sh" --node --print-env)"
	step "images: scripts/image.sh --e2e (operator, profefe, pproftarget, pause; kubectl-profefe archive)"
	"$PPOP_ROOT/scripts/image.sh" --e2e
	step "real-node suite (TestRealNode: containerd + kubelet in a network namespace, kubectl apply -k)"
	log=$(mktemp)
	set +e
	(cd "$PPOP_ROOT/e2e" && PPOP_REALNODE=1 go test -count=1 -run '^TestRealNode$' -v -timeout 20m ./) 2>&1 |
		tee "$log" | grep --line-buffered -E '^\s+(realnode_test|node)\.go:[0-9]+: (\[|node:|SKIP)|^(---|ok|FAIL|PASS)'
	rc=${PIPESTATUS[0]}
	set -e
	if ((rc != 0)); then
		tail -150 "$log"
		rm -f "$log"
		die "the real-node suite failed"
	fi
	if grep -q -- '--- SKIP: TestRealNode' "$log"; then
		printf '\n*** the real-node suite was SKIPPED: %s\n' "$(grep -o 'SKIP real-node suite: .*' "$log" | tail -1)"
	fi
	rm -f "$log"
}
