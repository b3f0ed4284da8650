#!/usr/bin/env python3
"""Writes a one-layer OCI image from a root folder, reproducibly.

Used by scripts/image.sh. No container engine is involved: the layer is a tar
written here with every entry's mtime set to SOURCE_DATE_EPOCH, owners from a
fixed table (root, except the paths given with --owned-by-nonroot), names
sorted, and gzip without a name or a time stamp. The same inputs give the same
bytes, so the same digest.

Output: an OCI image layout tarred as an OCI archive (what
`ctr images import`, `skopeo copy oci-archive:` and `podman load` read), and
the manifest digest on stdout.

  oci_image.py --rootfs DIR --out FILE.tar --ref NAME:TAG --epoch N \
      --entrypoint /usr/local/bin/x [--user 65532:65532] [--label k=v]... \
      [--env K=V]... [--owned-by-nonroot PATH]...
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

NONROOT = 65532


def layer_tar(rootfs, epoch, nonroot_paths):
    """The uncompressed layer: every file under rootfs, sorted by path."""
    buf = io.BytesIO()
    entries = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        rel = os.path.relpath(dirpath, rootfs)
        for name in sorted(dirnames + filenames):
            entries.append(os.path.normpath(os.path.join(rel, name)))
    entries.sort()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in entries:
            path = os.path.join(rootfs, rel)
            st = os.lstat(path)
            ti = tarfile.TarInfo(rel + ("/" if stat.S_ISDIR(st.st_mode) else ""))
            ti.mtime = epoch
            owned = any(rel == p or rel.startswith(p + "/") for p in nonroot_paths)
            ti.uid = ti.gid = NONROOT if owned else 0
            ti.uname = ti.gname = ""
            ti.mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                ti.name = rel
                tar.addfile(ti)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(path)
                tar.addfile(ti)
            elif stat.S_ISREG(st.st_mode):
                ti.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
            else:
                sys.exit(f"oci_image.py: {rel}: not a file, folder or symlink")
    return buf.getvalue()


def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as g:
        g.write(data)
    return out.getvalue()


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ref", required=True, help="NAME:TAG recorded in the archive's index")
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--entrypoint", required=True)
    ap.add_argument("--user", default=f"{NONROOT}:{NONROOT}")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--owned-by-nonroot", action="append", default=[])
    a = ap.parse_args()

    raw = layer_tar(a.rootfs, a.epoch, [p.strip("/") for p in a.owned_by_nonroot])
    layer = gz(raw)
    created = __import__("datetime").datetime.fromtimestamp(a.epoch, __import__("datetime").timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = dict(kv.split("=", 1) for kv in a.label)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": a.user,
            "Entrypoint": [a.entrypoint],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] + a.env,
            "WorkingDir": a.workdir,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(raw)]},
        "history": [{"created": created, "created_by": "scripts/image.sh"}],
    }
    config_b = canon(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config_b), "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(layer), "size": len(layer)}],
        "annotations": {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")},
    }
    manifest_b = canon(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(manifest_b), "size": len(manifest_b),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                # containerd names the imported image by the full reference;
                # other tools read only the tag.
                "io.containerd.image.name": a.ref,
                "org.opencontainers.image.ref.name": a.ref.rsplit(":", 1)[-1],
            },
        }],
    }
    files = [
        ("oci-layout", canon({"imageLayoutVersion": "1.0.0"})),
        ("index.json", canon(index)),
        ("blobs/sha256/" + sha(config_b)[7:], config_b),
        ("blobs/sha256/" + sha(layer)[7:], layer),
        ("blobs/sha256/" + sha(manifest_b)[7:], manifest_b),
    ]
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, a.epoch
            tar.addfile(ti)
        for name, data in sorted(files):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, a.epoch
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(json.dumps({"digest": sha(manifest_b), "layer_bytes": len(raw),
                      "compressed_bytes": len(layer) + len(config_b) + len(manifest_b)}))


if __name__ == "__main__":
    main()
