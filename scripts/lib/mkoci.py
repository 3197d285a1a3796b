#!/usr/bin/env python3
"""Writes a single-layer OCI image archive from a root directory.

    mkoci.py --ref NAME[:TAG] [options] ROOT OUT.tar

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...)
in one tar file, the format `ctr -n k8s.io images import` reads. It needs no
daemon and no registry: the test cluster has neither, and its nodes load
images with `ctr images import`.

Options (repeatable ones are marked +):
  --ref REF              image reference; a Docker-style short name is
                         normalised (raygate:0.1.0 -> docker.io/library/raygate:0.1.0)
                         because that is the name the kubelet's CRI looks up
  --entrypoint ARGS      JSON array (exec form, as in a Dockerfile) or one word
  --cmd ARGS             the same, for Cmd
  --env K=V +            Env; PATH defaults to the Debian/distroless PATH
  --user USER[:GROUP]    User; numeric ids need no /etc/passwd entry
  --workdir DIR          WorkingDir
  --expose PORT[/PROTO] +  ExposedPorts (documentation only, as in Docker)
  --label K=V +          Labels
  --exclude-contents DIR +  keep DIR (relative to ROOT, e.g. dev) but none
                         of its entries: the runtime mounts its own there
  --gzip                 gzip the layer (smaller, slower to write and import)
  --gzip-level N         gzip level, default 6
  --mtime EPOCH          every entry's mtime and the config's `created`;
                         default $SOURCE_DATE_EPOCH or 0

Determinism: entries are written in sorted order with a fixed mtime, numeric
owners as on disk (no user names) and PAX headers, gzip without a timestamp,
and JSON with sorted keys. The same root and options give the same digests.

Streaming: the root is read once, and the layer goes straight into OUT.tmp
(its header patched once the digest and size are known; renamed to OUT when
complete), so a ~600 MB root needs neither that much memory nor a second copy
on disk.

Python 3.11 standard library only.
"""

import argparse
import datetime
import gzip
import hashlib
import json
import os
import platform
import sys
import tarfile

BLOCK = tarfile.BLOCKSIZE  # 512
CHUNK = 1 << 20

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def normalize_ref(ref):
    """Docker's reference normalisation, which the kubelet's CRI applies to a
    Pod's image before it looks it up: the image must be stored under this
    name or a Pod naming it by the short form would not find it."""
    if "@" in ref:
        sys.exit(f"mkoci: --ref {ref}: digests are not supported, use a tag")
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    name, tag = (ref[:colon], ref[colon + 1 :]) if colon > slash else (ref, "latest")
    first, _, rest = name.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        # No registry host in front: Docker Hub, and one-word names live in library/.
        name = "docker.io/" + (name if rest else "library/" + name)
    if name != name.lower():
        sys.exit(f"mkoci: --ref {ref}: repository names must be lower case")
    return name, tag


def exec_form(value):
    """A Dockerfile-like exec form: a JSON array, or a single word."""
    if value.lstrip().startswith("["):
        parsed = json.loads(value)
        if not (isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)):
            sys.exit(f"mkoci: {value!r}: expected a JSON array of strings")
        return parsed
    return [value]


def key_value(items, what):
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            sys.exit(f"mkoci: {what} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


class Sink:
    """Counts and hashes what is written, then passes it on: the digests are
    computed while the bytes stream past, never by reading them again."""

    def __init__(self, out):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self):
        pass

    def digest(self):
        return "sha256:" + self.sha.hexdigest()


def walk(root, excluded):
    """Yields (absolute path, archive name) depth-first in byte order of the
    names, so the archive does not depend on the directory's listing order."""
    stack = [("", root)]
    while stack:
        rel, path = stack.pop()
        if rel:
            yield path, rel
        if rel not in excluded and os.path.isdir(path) and not os.path.islink(path):
            names = sorted(os.listdir(path), key=os.fsencode)
            for n in reversed(names):
                stack.append((f"{rel}/{n}" if rel else n, os.path.join(path, n)))


def write_layer(tar_out, root, excluded, mtime):
    """Writes ROOT as a tar stream into tar_out (file-like)."""
    with tarfile.open(
        fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK
    ) as t:
        t.copybufsize = CHUNK
        for path, rel in walk(root, excluded):
            ti = t.gettarinfo(path, arcname=rel)
            if ti is None:  # sockets: nothing a container could use
                continue
            ti.mtime = mtime
            ti.uname = ti.gname = ""  # numeric owners only
            if ti.isreg():
                with open(path, "rb") as f:
                    t.addfile(ti, f)
            else:
                t.addfile(ti)


def member_header(name, size, mtime, mode=0o644, kind=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = size, mtime, mode, kind
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(format=tarfile.USTAR_FORMAT)


def padding(size):
    return b"\0" * (-size % BLOCK)


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ref", required=True)
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--exclude-contents", action="append", default=[])
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--gzip-level", type=int, default=6)
    p.add_argument("--mtime", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    p.add_argument("root")
    p.add_argument("out")
    a = p.parse_args()

    if not os.path.isdir(a.root):
        sys.exit(f"mkoci: {a.root}: not a directory")
    name, tag = normalize_ref(a.ref)
    excluded = {d.strip("/") for d in a.exclude_contents}
    created = datetime.datetime.fromtimestamp(a.mtime, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")

    tmp = a.out + ".tmp"
    with open(tmp, "w+b") as out:
        # The layer comes first, behind a placeholder header: its name is its
        # digest and its size is unknown until the stream has been written.
        out.write(b"\0" * BLOCK)
        stored = Sink(out)
        if a.gzip:
            # filename="" and mtime=0 keep the gzip header free of build details.
            gz = gzip.GzipFile(filename="", fileobj=stored, mode="wb",
                               compresslevel=a.gzip_level, mtime=0)
            raw = Sink(gz)
            write_layer(raw, a.root, excluded, a.mtime)
            gz.close()
            diff_id = raw.digest()
            raw_size = raw.size
        else:
            write_layer(stored, a.root, excluded, a.mtime)
            diff_id = stored.digest()
            raw_size = stored.size
        layer_digest, layer_size = stored.digest(), stored.size
        out.write(padding(layer_size))
        end = out.tell()
        out.seek(0)
        out.write(member_header(f"blobs/sha256/{layer_digest[7:]}", layer_size, a.mtime))
        out.seek(end)

        # PATH first (a given one replaces the default in place), as Docker lists it.
        env = {"PATH": DEFAULT_PATH}
        env.update(key_value(a.env, "--env"))
        cfg = {"Env": [f"{k}={v}" for k, v in env.items()]}
        if a.entrypoint is not None:
            cfg["Entrypoint"] = exec_form(a.entrypoint)
        if a.cmd is not None:
            cfg["Cmd"] = exec_form(a.cmd)
        if a.user:
            cfg["User"] = a.user
        if a.workdir:
            cfg["WorkingDir"] = a.workdir
        if a.expose:
            cfg["ExposedPorts"] = {
                (e if "/" in e else e + "/tcp"): {} for e in a.expose
            }
        if a.label:
            cfg["Labels"] = key_value(a.label, "--label")
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        config = {
            "architecture": arch,
            "os": "linux",
            "created": created,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "scripts/lib/mkoci.py"}],
        }

        def blob(obj):
            data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
            return data, "sha256:" + hashlib.sha256(data).hexdigest()

        config_b, config_d = blob(config)
        manifest_b, manifest_d = blob({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_d, "size": len(config_b)},
            "layers": [{
                "mediaType": MEDIA_LAYER + ("+gzip" if a.gzip else ""),
                "digest": layer_digest,
                "size": layer_size,
            }],
        })
        index_b, _ = blob({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_d,
                "size": len(manifest_b),
                "platform": {"architecture": arch, "os": "linux"},
                # containerd names the image after io.containerd.image.name
                # when it is there; the OCI annotation holds the tag only, as
                # the image-layout spec and BuildKit's OCI exporter have it.
                "annotations": {
                    "io.containerd.image.name": f"{name}:{tag}",
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        })
        for path, data in [
            ("blobs/sha256/" + config_d[7:], config_b),
            ("blobs/sha256/" + manifest_d[7:], manifest_b),
            ("index.json", index_b),
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ]:
            out.write(member_header(path, len(data), a.mtime))
            out.write(data + padding(len(data)))
        out.write(b"\0" * (2 * BLOCK))  # end of archive
    os.replace(tmp, a.out)
    print(json.dumps({
        "out": a.out, "ref": f"{name}:{tag}", "manifest": manifest_d,
        "layer": layer_digest, "layer_bytes": layer_size, "tar_bytes": raw_size,
    }))


if __name__ == "__main__":
    main()
