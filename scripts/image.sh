#!/usr/bin/env bash
# scripts/image.sh: builds the operator's container image and the
# kubectl-profefe release archive, from Debian packages only (no registry,
# no container engine, no daemon).
#
#   scripts/image.sh                      the operator image + kubectl-profefe archive
#   scripts/image.sh --e2e                also the images the real-node e2e suite runs:
#                                         pproftarget (demo Go service), profefe, pause
#   scripts/image.sh --check-reproducible build the operator image twice, compare digests
#   scripts/image.sh --pin                write those digests into config/release/
#   scripts/image.sh --update-lock        re-pin the Debian packages (scripts/image.lock)
#
# Output in build/image/ (or --out DIR):
#   profefe-operator.oci.tar        OCI archive: ctr -n k8s.io images import, skopeo, podman load
#   profefe-operator.digest         its manifest digest (sha256:...)
#   kubectl-profefe_vX.Y.Z_linux_amd64.tar.gz (+ .sha256)
#   krew/profefe.yaml               the krew manifest for that archive, with its sha256
#   kustomization.yaml              an overlay of config/default setting these images by digest
#
# The image: one layer holding /usr/local/bin/profefe-operator, the shared
# libraries it loads (from the Debian packages pinned, with their sha256, in
# scripts/image.lock), the CA bundle, zoneinfo, and a passwd with user 65532;
# no shell and no package manager. OCI labels give the source, revision and
# version. SOURCE_DATE_EPOCH (default: the time of the last commit touching
# the image's inputs) sets every time stamp, so two builds of one commit on
# one machine have the same digest. The Dockerfile builds the same root folder
# with the same script (scripts/image-rootfs.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$PPOP_ROOT"

out=$PPOP_ROOT/build/image
e2e=false check=false pin=false update_lock=false
while (($#)); do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--e2e) e2e=true; shift ;;
	--check-reproducible) check=true; shift ;;
	--pin) pin=true; shift ;;
	--update-lock) update_lock=true; shift ;;
	-h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "image.sh: unknown argument $1 (try --help)" ;;
	esac
done

log() { echo "image.sh: $*" >&2; }
for t in python3 dpkg-deb readelf apt-get cmake ninja; do
	command -v "$t" >/dev/null || die "image.sh needs $t (Debian: python3 dpkg binutils apt cmake ninja-build)"
done

lock=$PPOP_ROOT/scripts/image.lock
debs=$PPOP_CACHE/image-debs
mkdir -p "$out" "$debs"
version=$(sed -n 's/^project(profefe-operator VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[[ -n "$version" ]] || die "cannot read the project version from CMakeLists.txt"
source_url=https://github.com/profefe/profefe-operator
registry=ghcr.io/profefe/profefe-operator
# What the image is made of: a commit touching none of these keeps its digest.
inputs=(CMakeLists.txt LICENSE loop kube reconcile capture operator kubectl-profefe
	scripts/image.sh scripts/image-rootfs.sh scripts/oci_image.py scripts/image.lock)
if git rev-parse --git-dir >/dev/null 2>&1; then
	revision=$(git log -1 --format=%H -- "${inputs[@]}")
	epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct -- "${inputs[@]}")}
	git diff --quiet HEAD -- "${inputs[@]}" || revision+=-dirty
else
	revision=unknown
	epoch=${SOURCE_DATE_EPOCH:-0}
fi
export SOURCE_DATE_EPOCH=$epoch

# build_operator DIR: a release build of the C tree, installed into DIR/out.
build_operator() {
	local dir=$1
	log "building the C tree (RelWithDebInfo, stripped, no tests) in $dir"
	cmake -S . -B "$dir/cmake" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPPOP_TESTS=OFF -DPPOP_WERROR=ON \
		-DCMAKE_C_FLAGS="-ffile-prefix-map=$PPOP_ROOT=." >/dev/null
	cmake --build "$dir/cmake" >"$dir/cmake.log" 2>&1 || { tail -30 "$dir/cmake.log" >&2; die "C build failed"; }
	rm -rf "$dir/out"
	cmake --install "$dir/cmake" --prefix "$dir/out" --strip >/dev/null
}

if $update_lock; then
	step "re-pinning the Debian packages the operator image is made of"
	build_operator "$out/work"
	bin=$out/work/out/bin/profefe-operator
	mapfile -t libs < <(ldd "$bin" | awk '/=>/ { print $3 } /ld-linux/ && !/=>/ { print $1 }')
	pkgs=$(for l in "${libs[@]}"; do dpkg -S "$(realpath "$l")" 2>/dev/null || dpkg -S "$l"; done |
		cut -d: -f1 | sort -u)
	{
		echo "# Debian packages the images are made of: package version sha256-of-the-.deb."
		echo "# Written by scripts/image.sh --update-lock: the packages holding the libraries the"
		echo "# operator loads, at the Debian $(cat /etc/debian_version) mirror's versions of $(date -u +%Y-%m-%d)."
		echo "# scripts/image-rootfs.sh fetches exactly these and checks their sha256."
		for p in $pkgs ca-certificates tzdata; do
			# the mirror's version (ABI-compatible within the release with what was linked)
			v=$(apt-cache policy "$p" | awk '$1 == "Candidate:" { print $2 }')
			[[ -n "$v" && "$v" != "(none)" ]] || die "no candidate version of $p (apt-get update?)"
			(cd "$debs" && apt-get download -qq "$p=$v" >/dev/null 2>&1) || die "cannot download $p=$v"
			f=$(ls "$debs/${p}_"*.deb | grep -F "/${p}_${v//:/%3a}_" | head -1)
			echo "$p $v $(sha256sum "$f" | cut -d' ' -f1)"
		done
	} >"$lock.tmp"
	mv "$lock.tmp" "$lock"
	log "wrote $lock ($(grep -vc '^#' "$lock") packages)"
	exit 0
fi
[[ -f "$lock" ]] || die "$lock is missing; run scripts/image.sh --update-lock"

labels() { # labels TITLE DESCRIPTION VERSION: sets the array lbl
	lbl=(--label "org.opencontainers.image.title=$1"
		--label "org.opencontainers.image.description=$2"
		--label "org.opencontainers.image.version=$3"
		--label "org.opencontainers.image.source=$source_url"
		--label "org.opencontainers.image.revision=$revision"
		--label "org.opencontainers.image.licenses=Apache-2.0"
		--label "org.opencontainers.image.created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)")
}

# image NAME REF ROOTFS-ARGS... -- OCI-ARGS...: root folder + OCI archive, prints the digest.
image() {
	local name=$1 ref=$2
	shift 2
	local rootfs_args=() oci_args=()
	while (($#)) && [[ "$1" != -- ]]; do rootfs_args+=("$1"); shift; done
	shift
	oci_args=("$@")
	"$PPOP_ROOT/scripts/image-rootfs.sh" --out "$out/work/rootfs-$name" --debs "$debs" --lock "$lock" \
		--allow-unpinned "${rootfs_args[@]}"
	python3 "$PPOP_ROOT/scripts/oci_image.py" --rootfs "$out/work/rootfs-$name" --out "$out/$name.oci.tar" \
		--ref "$ref" --epoch "$epoch" --owned-by-nonroot home/nonroot --owned-by-nonroot var/spool/profefe-operator \
		"${oci_args[@]}" >"$out/work/$name.json"
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$out/work/$name.json" >"$out/$name.digest"
	local sz
	sz=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f MB (%.1f MB compressed)" % (d["layer_bytes"]/1e6, d["compressed_bytes"]/1e6))' "$out/work/$name.json")
	log "image $ref: $(cat "$out/$name.digest"), $sz, in $out/$name.oci.tar"
}

operator_image() {
	build_operator "$out/work"
	labels profefe-operator "Continuous profiling for Go services on Kubernetes" "v$version"
	image profefe-operator "$registry:v$version" \
		--binary "$out/work/out/bin/profefe-operator:/usr/local/bin/profefe-operator" -- \
		--entrypoint /usr/local/bin/profefe-operator "${lbl[@]}"
}

step "operator image v$version (revision $revision, SOURCE_DATE_EPOCH=$epoch)"
operator_image

if $check; then
	first=$(cat "$out/profefe-operator.digest")
	step "building the operator image again from scratch to compare digests"
	mv "$out/profefe-operator.oci.tar" "$out/work/first.oci.tar"
	rm -rf "$out/work/cmake" "$out/work/out" "$out/work/rootfs-profefe-operator"
	operator_image
	second=$(cat "$out/profefe-operator.digest")
	if [[ "$first" == "$second" ]] && cmp -s "$out/work/first.oci.tar" "$out/profefe-operator.oci.tar"; then
		log "reproducible: both builds are $first (archives byte for byte equal)"
	else
		die "NOT reproducible: $first then $second"
	fi
	rm -f "$out/work/first.oci.tar"
fi

step "kubectl-profefe v$version release archive and krew manifest"
archive=kubectl-profefe_v${version}_linux_amd64.tar.gz
rm -rf "$out/work/plugin" && mkdir -p "$out/work/plugin"
cp "$out/work/out/bin/kubectl-profefe" LICENSE "$out/work/plugin/"
tar -C "$out/work/plugin" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
	--format=gnu -cf - kubectl-profefe LICENSE | gzip -9n >"$out/$archive"
sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
echo "$sha  $archive" >"$out/$archive.sha256"
mkdir -p "$out/krew"
url=${PPOP_RELEASE_URL:-$source_url/releases/download/v$version}/$archive
sed -e "s|{{VERSION}}|v$version|" -e "s|{{HOMEPAGE}}|$source_url|" \
	-e "s|{{URL_LINUX_AMD64}}|$url|" -e "s|{{SHA256_LINUX_AMD64}}|$sha|" \
	kubectl-profefe/krew/profefe.yaml >"$out/krew/profefe.yaml"
grep -v '^#' "$out/krew/profefe.yaml" | grep -q '{{' && die "krew manifest still has placeholders"
log "$archive: sha256 $sha; krew manifest $out/krew/profefe.yaml"

overlay_images=("$registry" "$(cat "$out/profefe-operator.digest")")
if $e2e; then
	step "e2e images: pproftarget (demo Go service), pause (pod sandbox) and profefe"
	mkdir -p "$out/work/go"
	(cd e2e && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
		-o "$out/work/go/pproftarget" ./cmd/pproftarget)
	labels pproftarget "profefe-operator e2e demo Go service" dev
	image pproftarget localhost/profefe-operator-e2e/pproftarget:dev --static \
		--binary "$out/work/go/pproftarget:/usr/local/bin/pproftarget" -- \
		--entrypoint /usr/local/bin/pproftarget "${lbl[@]}"
	(cd e2e && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
		-o "$out/work/go/pause" ./cmd/pause)
	labels pause "profefe-operator e2e pod sandbox (pause)" dev
	image pause localhost/profefe-operator-e2e/pause:dev --static \
		--binary "$out/work/go/pause:/pause" -- --entrypoint /pause "${lbl[@]}"
	[[ -n "${PPOP_PROFEFE:-}" ]] || eval "$("$PPOP_ROOT/e2e/tools/build.sh" --print-env)"
	pv=$(awk '$1 == "github.com/profefe/profefe" { print $2 } $2 == "github.com/profefe/profefe" { print $3 }' e2e/tools/profefe/go.mod | head -1)
	labels profefe "profefe collector built from github.com/profefe/profefe $pv" "$pv"
	image profefe "$registry/profefe:$pv" --static \
		--binary "$PPOP_PROFEFE:/usr/local/bin/profefe" -- \
		--entrypoint /usr/local/bin/profefe "${lbl[@]}"
	overlay_images+=("$registry/profefe" "$(cat "$out/profefe.digest")")
fi

# An overlay of config/default with the images just built, by digest.
write_overlay() { # write_overlay FILE BASE
	{
		echo "# Written by scripts/image.sh: config/default with its images by digest."
		echo "apiVersion: kustomize.config.k8s.io/v1beta1"
		echo "kind: Kustomization"
		echo "resources:"
		echo "- $2"
		echo "images:"
		local i
		for ((i = 0; i < ${#overlay_images[@]}; i += 2)); do
			echo "- name: ${overlay_images[i]}"
			echo "  digest: ${overlay_images[i + 1]}"
		done
	} >"$1"
}
write_overlay "$out/kustomization.yaml" "$(realpath --relative-to="$out" config/default)"
if $pin; then
	write_overlay config/release/kustomization.yaml ../default
	log "pinned config/release/kustomization.yaml to these digests"
fi
rm -rf "$out/work/rootfs-"* "$out/work/plugin"
step "images ready in $out"
