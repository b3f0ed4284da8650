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
	libyaml-dev libssl-dev zlib1g-dev libcmocka-dev clang-format iproute2 procps curl)

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

# ensure_tools: builds kube-apiserver, etcd, kubectl and profefe once per
# machine (a cold build takes many minutes and prints its progress).
ensure_tools() {
	step "real control plane and profefe (built once per machine into $PPOP_CACHE)"
	"$PPOP_ROOT/e2e/tools/build.sh"
	eval "$("$PPOP_ROOT/e2e/tools/build.sh" --print-env)"
}
