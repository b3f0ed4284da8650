#!/usr/bin/env bash
# scripts/image-rootfs.sh: lays out the root folder of a minimal image: one
# program, the shared libraries it loads (taken from the Debian packages
# pinned in scripts/image.lock, never from the build machine), the CA bundle,
# zoneinfo, a passwd/group with the non-root user 65532, the packages'
# copyright files and a dpkg status.d entry per package (so image scanners
# see what is inside). No shell, no package manager, nothing else.
#
# Used by scripts/image.sh and by the Dockerfile's build stage, so both make
# the same root folder.
#
#   image-rootfs.sh --out DIR --debs DIR --lock FILE [--binary SRC:DEST]... [--static]
#
#   --binary SRC:DEST  copy SRC to DEST in the image (e.g. /usr/local/bin/x)
#   --debs DIR         where the pinned .deb files are, or are downloaded to
#   --static           the binaries need no shared library (Go, CGO_ENABLED=0):
#                      only libc-free files (CA bundle, zoneinfo, passwd)
#   --lock FILE        "package version sha256" lines (scripts/image.lock)
#   --allow-unpinned   if a pinned version is no longer on the mirror, take
#                      the mirror's version and say so (the digest changes)
set -euo pipefail

out="" debs="" lock="" static=false allow_unpinned=false
binaries=()
while (($#)); do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--debs) debs=$2; shift 2 ;;
	--lock) lock=$2; shift 2 ;;
	--binary) binaries+=("$2"); shift 2 ;;
	--static) static=true; shift ;;
	--allow-unpinned) allow_unpinned=true; shift ;;
	*) echo "image-rootfs.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ -n "$out" && -n "$debs" && -n "$lock" ]] || { echo "image-rootfs.sh: --out, --debs and --lock are required" >&2; exit 2; }

log() { echo "image-rootfs.sh: $*" >&2; }
die() { log "$*"; exit 1; }

mkdir -p "$debs"
# Fetch the pinned packages (once; kept in --debs) and check their sha256.
pkgs=()
while read -r pkg ver sum; do
	[[ -z "$pkg" || "$pkg" == \#* ]] && continue
	if $static && [[ "$pkg" != ca-certificates && "$pkg" != tzdata ]]; then continue; fi
	pkgs+=("$pkg")
	f=$(ls "$debs/${pkg}_"*.deb 2>/dev/null | grep -F "/${pkg}_${ver//:/%3a}_" | head -1 || true)
	if [[ -z "$f" ]]; then
		log "downloading $pkg=$ver"
		if ! (cd "$debs" && apt-get download -qq "$pkg=$ver" >/dev/null 2>&1); then
			$allow_unpinned || die "$pkg=$ver is not available from the configured Debian mirror; run scripts/image.sh --update-lock (or pass --allow-unpinned)"
			log "WARNING: $pkg=$ver is gone from the mirror; using its current version instead (the image digest will differ from the pinned build)"
			(cd "$debs" && apt-get download -qq "$pkg" >/dev/null 2>&1) || die "cannot download $pkg"
			f=$(ls -t "$debs/${pkg}_"*.deb | head -1)
			sum=$(sha256sum "$f" | cut -d' ' -f1)
		else
			f=$(ls "$debs/${pkg}_"*.deb | grep -F "/${pkg}_${ver//:/%3a}_" | head -1)
		fi
	fi
	got=$(sha256sum "$f" | cut -d' ' -f1)
	if [[ "$got" != "$sum" ]]; then
		$allow_unpinned || die "$f: sha256 $got, but scripts/image.lock pins $sum"
	fi
	echo "$f"
done <"$lock" >"$out.debs"

rm -rf "$out" "$out.stage"
mkdir -p "$out" "$out.stage"
trap 'rm -rf "$out.stage" "$out.debs"' EXIT
while read -r f; do
	dpkg-deb -x "$f" "$out.stage"
	pkg=$(dpkg-deb -f "$f" Package)
	mkdir -p "$out/var/lib/dpkg/status.d" "$out/usr/share/doc/$pkg"
	{ dpkg-deb -f "$f" Package Version Architecture Source Maintainer Homepage; echo "Status: install ok installed"; } \
		>"$out/var/lib/dpkg/status.d/$pkg"
	# copyright files only, for the licences; doc links between packages are skipped
	if [[ -f "$out.stage/usr/share/doc/$pkg/copyright" ]]; then
		cp "$out.stage/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/copyright"
	fi
done <"$out.debs"

# The program(s).
for b in "${binaries[@]}"; do
	src=${b%%:*} dest=${b#*:}
	install -D -m 0755 "$src" "$out$dest"
done

# Shared libraries: NEEDED entries resolved in the packages, transitively.
libdirs=(lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu)
copy_path() { # copy_path REL: copy a file and the symlinks leading to it, as in the package
	local rel=$1 target
	while :; do
		[[ -e "$out/$rel" || -L "$out/$rel" ]] && return 0
		mkdir -p "$(dirname "$out/$rel")"
		if [[ -L "$out.stage/$rel" ]]; then
			target=$(readlink "$out.stage/$rel")
			ln -s "$target" "$out/$rel"
			case "$target" in /*) rel=${target#/} ;; *) rel=$(dirname "$rel")/$target ;; esac
		else
			[[ -f "$out.stage/$rel" ]] || die "$rel: not in the pinned packages"
			cp -p "$out.stage/$rel" "$out/$rel"
			return 0
		fi
	done
}
if ! $static; then
	queue=()
	for b in "${binaries[@]}"; do queue+=("$out${b#*:}"); done
	declare -A seen=()
	while ((${#queue[@]})); do
		elf=${queue[0]}
		queue=("${queue[@]:1}")
		interp=$(readelf -lW "$elf" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
		if [[ -n "$interp" && -z "${seen[$interp]:-}" ]]; then
			seen[$interp]=1
			copy_path "${interp#/}"
		fi
		for lib in $(readelf -dW "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
			[[ -n "${seen[$lib]:-}" ]] && continue
			seen[$lib]=1
			found=""
			for d in "${libdirs[@]}"; do
				if [[ -e "$out.stage/$d/$lib" ]]; then found=$d/$lib; break; fi
			done
			[[ -n "$found" ]] || die "$lib (needed by ${elf#$out}) is in none of the pinned packages; run scripts/image.sh --update-lock"
			copy_path "$found"
			queue+=("$(realpath "$out/$found")")
		done
	done
	# glibc's own runtime pieces a program may load without a NEEDED entry.
	for rel in lib/x86_64-linux-gnu/libnss_dns.so.2 lib/x86_64-linux-gnu/libnss_files.so.2 lib/x86_64-linux-gnu/libresolv.so.2; do
		[[ -e "$out.stage/$rel" ]] && copy_path "$rel"
	done
fi

# CA bundle, as update-ca-certificates builds it from the package's certs.
mkdir -p "$out/etc/ssl/certs"
find "$out.stage/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | while read -r c; do
	cat "$c"
	[[ -z "$(tail -c1 "$c")" ]] || echo
done >"$out/etc/ssl/certs/ca-certificates.crt"
[[ -s "$out/etc/ssl/certs/ca-certificates.crt" ]] || die "no CA certificates in the ca-certificates package"

# zoneinfo (IANA names only; tzdata's legacy folders are links into it).
cp -a "$out.stage/usr/share/zoneinfo" "$out/usr/share/zoneinfo"
rm -rf "$out/usr/share/zoneinfo/right" "$out/usr/share/zoneinfo/posix"
ln -s /usr/share/zoneinfo/UTC "$out/etc/localtime"

# Users: root (owns the files) and nonroot 65532 (runs the program).
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
mkdir -p "$out/home/nonroot" "$out/tmp" "$out/var/spool/profefe-operator"
chmod 1777 "$out/tmp"
chmod 0755 "$out/home/nonroot" "$out/var/spool/profefe-operator"
chmod -R u+w,go-w "$out"
log "root folder ready in $out: $(du -sh "$out" | cut -f1), $(find "$out" -type f | wc -l) files"
