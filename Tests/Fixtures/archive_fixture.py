#!/usr/bin/env python3
"""Image archives as users bring them, written with Python's tarfile for ArchiveImportTests.

    archive_fixture.py docker-save OUT [--tag T] [--also T2] [--arch A] [--gzip-layers] [--hardlink-layer]
                                       [--bad-diff-id] [--aufs]

docker-save: the classic `docker save` format (manifest.json, <id>/layer.tar, <id>.json config
with rootfs.diff_ids), two layers. --gzip-layers: the layers gzip-compressed, named <hex>.tar.gz
(crane, kaniko and ko write such tarballs). --hardlink-layer: the second layer.tar is a tar hard
link to the first's data (the archive then lists one layer twice). --bad-diff-id: the config names
another digest for the first layer (a damaged archive). --aufs: the first layer carries aufs
bookkeeping (.wh..wh.aufs, .wh..wh.orph/, .wh..wh.plnk/...), which must not reach an image.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile


def member(name, data=b"", kind=tarfile.REGTYPE, mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode if kind != tarfile.DIRTYPE else 0o755
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = 1700000000
    return info, data


def layer(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            if name.endswith("/"):
                info, _ = member(name.rstrip("/"), kind=tarfile.DIRTYPE)
                tar.addfile(info)
            else:
                info, data = member(name, data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def docker_save(out, options):
    first = [("etc/", b""), ("etc/first.txt", b"one\n")]
    if "--aufs" in options:
        first += [(".wh..wh.aufs", b""), (".wh..wh.orph/", b""), (".wh..wh.plnk/", b""), (".wh..wh.plnk/123.456", b"x")]
    layers = [layer(first), layer([("etc/second.txt", b"two\n")])]
    if "--hardlink-layer" in options:
        layers[1] = layers[0]
    diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data in layers]
    if "--bad-diff-id" in options:
        diff_ids[0] = "sha256:" + "1" * 64
    tag = options[options.index("--tag") + 1] if "--tag" in options else "example.org/team/app:1.0"
    arch = options[options.index("--arch") + 1] if "--arch" in options else "amd64"
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin", "FROM_ARCHIVE=1"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = []
    blobs = []
    for data in layers:
        if "--gzip-layers" in options:
            data = gzip.compress(data, mtime=0)
            names.append(hashlib.sha256(data).hexdigest() + ".tar.gz")
        else:
            names.append(hashlib.sha256(data).hexdigest()[:12] + f"{len(names)}/layer.tar")
        blobs.append(data)
    entries = [{"Config": config_name, "RepoTags": [tag], "Layers": names}]
    extra = []
    if "--also" in options:
        # a second image of the same layers under another name (another config)
        other = config.replace(b"FROM_ARCHIVE=1", b"FROM_ARCHIVE=2")
        other_name = hashlib.sha256(other).hexdigest() + ".json"
        entries.append({"Config": other_name, "RepoTags": [options[options.index("--also") + 1]], "Layers": names})
        extra.append((other_name, other))
    manifest = json.dumps(entries).encode()
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for index, (name, data) in enumerate(zip(names, blobs)):
            if "/" in name:
                info, _ = member(name.split("/")[0], kind=tarfile.DIRTYPE)
                tar.addfile(info)
            if index == 1 and "--hardlink-layer" in options:
                info = tarfile.TarInfo(name)
                info.type = tarfile.LNKTYPE
                info.linkname = names[0]
                tar.addfile(info)
                continue
            info, data = member(name, data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in [(config_name, config)] + extra + [("manifest.json", manifest)]:
            info, data = member(name, data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "docker-save":
        sys.exit(__doc__)
    docker_save(sys.argv[2], sys.argv[3:])
