#!/usr/bin/env python3
"""Layers with every legal tricky case, random layers, and a tree comparison, for img-squash's tests.

  squash_fixture.py tricky OUT       layers 1..5 as OUT/N.tar, gzip copies, an OCI layout OUT/layout (tag t)
  squash_fixture.py random OUT SEED  three random layers with whiteouts and hard links, same outputs
  squash_fixture.py bad OUT          one layer per kind of bad input
  squash_fixture.py compare A B [--owners] [--no-security-xattrs]
                                     compare two trees; differences on stdout, exit 1 if any

The comparison covers what a runtime sees: type, permission bits (setuid/setgid/sticky included),
content, symlink target, device numbers, hard-link groups, xattrs (user., security.), regular
files' mtimes and, with --owners, owners.
"""
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tarfile

MTIME = 1700000000


def info(name, kind=tarfile.REGTYPE, mode=0o644, data=b"", **extra):
    t = tarfile.TarInfo(name)
    t.type = kind
    t.mode = mode
    t.mtime = extra.pop("mtime", MTIME)
    t.uid = extra.pop("uid", 0)
    t.gid = extra.pop("gid", 0)
    t.uname = t.gname = ""
    for key, value in extra.items():
        setattr(t, key, value)
    if kind == tarfile.REGTYPE:
        t.size = len(data)
    return t, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_layer(path, members, fmt=tarfile.PAX_FORMAT):
    with tarfile.open(path, "w", format=fmt) as tar:
        for t, data in members:
            tar.addfile(t, data)


def rand_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n)) if n < 4096 else rng.randbytes(n)


def tricky(out):
    rng = random.Random(7)
    big = rng.randbytes(1 << 20) + b"tail"
    d = lambda name, mode=0o755, **kw: info(name, tarfile.DIRTYPE, mode, **kw)
    f = lambda name, data=b"", mode=0o644, **kw: info(name, tarfile.REGTYPE, mode, data, **kw)
    long_dir = "deep/" + "d" * 120 + "/" + "e" * 120
    long_name = "n" * 255
    layer1 = [
        d("./"),
        d("etc"), d("usr"), d("usr/bin"), d("data"), d("opq"), d("opq/sub"), d("tmp", 0o1777),
        d("dir-to-delete"), d("dir-to-replace"), d("empty-dir"),
        f("etc/hostname", b"toolbox\n"),
        f("usr/bin/tool", b"#!/bin/sh\necho old\n", 0o755, pax_headers={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12}),
        info("usr/bin/tool-link", tarfile.LNKTYPE, 0o755, linkname="usr/bin/tool"),
        info("data/hl", tarfile.LNKTYPE, 0o755, linkname="usr/bin/tool"),
        f("usr/bin/suid", b"suid", 0o4755),
        f("usr/bin/sgid", b"sgid", 0o2755),
        f("usr/bin/owned", b"owned", 0o640, uid=1000, gid=1001),
        info("etc/alt", tarfile.SYMTYPE, 0o777, linkname="../usr/bin/tool"),
        info("loop1", tarfile.SYMTYPE, 0o777, linkname="loop2"),
        info("loop2", tarfile.SYMTYPE, 0o777, linkname="loop1"),
        info("dangling", tarfile.SYMTYPE, 0o777, linkname="/does/not/exist"),
        info("data/fifo", tarfile.FIFOTYPE, 0o600),
        info("data/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
        info("data/loop0", tarfile.BLKTYPE, 0o660, devmajor=7, devminor=0),
        info("data/bigminor", tarfile.CHRTYPE, 0o600, devmajor=240, devminor=70000),
        f("data/big", big),
        f("data/copy-of-big", big),
        f("data/empty", b""),
        f("data/xattrs", b"x", pax_headers={"SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.user.empty": ""}),
        f("data/delete-me", b"gone"),
        f("dir-to-delete/inner", b"gone too"),
        d("dir-to-delete/sub"), f("dir-to-delete/sub/x", b"x"),
        f("dir-to-replace/inner", b"replaced"),
        f("opq/a", b"hidden by opaque"), f("opq/sub/b", b"hidden too"),
        d(long_dir), f(long_dir + "/" + long_name, b"long"),
        f("data/blocks", rng.randbytes(3 * 131072)),
        f("data/zeros", bytes(5 * 131072 + 17)),
        f("utf8-\u00e9\u00e8", b"accents"),
        # a directory whose listing spans many metadata blocks (it gets a directory index)
        d("many"),
        # a directory a later layer replaces with a file, and a third with a directory again:
        # what this layer had in it must not come back
        d("reborn"), f("reborn/old-secret", b"deleted by layer 2"), d("reborn/sub"), f("reborn/sub/x", b"gone"),
        d("reborn-link"), f("reborn-link/old", b"deleted by layer 2's symlink"),
        # hard links to a symbolic link and a fifo that layer 2 deletes
        info("hidden-sym", tarfile.SYMTYPE, 0o777, linkname="etc/hostname"),
        info("hl-to-hidden-sym", tarfile.LNKTYPE, 0o777, linkname="hidden-sym"),
        info("hidden-fifo", tarfile.FIFOTYPE, 0o644),
        info("hl-to-hidden-fifo", tarfile.LNKTYPE, 0o644, linkname="hidden-fifo"),
    ] + [f("many/%05d-%s" % (i, "x" * (i % 50)), b"%d" % (i % 7)) for i in range(3000)]
    layer2 = [
        d("data"),
        f("data/.wh.delete-me"),
        f(".wh.dir-to-delete"),
        f(".wh.never-existed"),
        f("opq/.wh..wh..opq"),
        f("opq/new", b"after opaque"),
        f("dir-to-replace", b"now a file"),
        f("usr/bin/tool", b"#!/bin/sh\necho new\n", 0o755),
        f("etc/new.conf", b"new"),
        d("etc", 0o750),
        f("reborn", b"a file for a while"),
        info("reborn-link", tarfile.SYMTYPE, 0o777, linkname="etc"),
        f(".wh.hidden-sym"), f(".wh.hidden-fifo"),
    ]
    layer3 = [
        d("usr/bin/sgid", 0o700),
        f("usr/bin/sgid/inside", b"inside"),
        f("dup", b"first"),
        f("dup", b"second wins", 0o600),
        f("implicit/parent/file", b"no parent entries"),
        d("reborn"), f("reborn/new", b"layer 3's"),
        d("reborn-link"), d("reborn-link/sub"), f("reborn-link/sub/new", b"layer 3's too"),
    ]
    layer4_members = [
        f("late-hl-target", b"target"),
        info("late-hl", tarfile.LNKTYPE, 0o644, linkname="late-hl-target"),
        d("later-dir", 0o711),
        f("later-dir/.wh.nothing"),
    ]
    os.makedirs(out, exist_ok=True)
    write_layer(f"{out}/1.tar", layer1)
    write_layer(f"{out}/2.tar", layer2)
    write_layer(f"{out}/3.tar", layer3, tarfile.GNU_FORMAT)
    write_layer(f"{out}/4.tar", layer4_members, tarfile.USTAR_FORMAT)
    # Layer 5: sparse files as GNU tar writes them (PAX 1.0 sparse and old GNU sparse).
    work = f"{out}/sparse-src"
    os.makedirs(work, exist_ok=True)
    for name in ("sparse-pax", "sparse-gnu", "sparse-pax00", "sparse-pax01"):
        with open(f"{work}/{name}", "wb") as fh:
            fh.seek(3 << 20)
            fh.write(b"middle")
            fh.seek(7 << 20)
            fh.write(b"end")
            fh.truncate(8 << 20)
    subprocess.run(["tar", "--sparse", "--format=posix", "--owner=0", "--group=0", "--mtime=@%d" % MTIME,
                    "-C", work, "-cf", f"{out}/5a.tar", "sparse-pax"], check=True)
    subprocess.run(["tar", "--sparse", "--format=gnu", "--owner=0", "--group=0", "--mtime=@%d" % MTIME,
                    "-C", work, "-cf", f"{out}/5b.tar", "sparse-gnu"], check=True)
    # PAX sparse formats 0.0 (the map in repeated offset/numbytes records) and 0.1 (in one record)
    # with a member of exact size; compared with GNU tar's extraction like 5b.
    subprocess.run(["tar", "--sparse", "--format=posix", "--sparse-version=0.0", "--owner=0", "--group=0",
                    "--mtime=@%d" % MTIME, "-C", work, "-cf", f"{out}/5c.tar", "sparse-pax00"], check=True)
    subprocess.run(["tar", "--sparse", "--format=posix", "--sparse-version=0.1", "--owner=0", "--group=0",
                    "--mtime=@%d" % MTIME, "-C", work, "-cf", f"{out}/5d.tar", "sparse-pax01"], check=True)
    shutil.rmtree(work)
    # Old GNU sparse members ('S') are not read by umoci (Go's archive/tar): 5b stays out of the
    # layout; the tests compare it with what GNU tar extracts.
    finish(out, ["1", "2", "3", "4", "5a"])


def random_layers(out, seed):
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    kinds = {}  # path -> "dir" | "file" | "link", as the layers so far leave the tree
    for n in range(3):
        prior = dict(kinds)
        members, names = [], set()

        def add_parents(parts):
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in kinds:
                    kinds[parent] = "dir"
                    if rng.random() < 0.5 and parent not in names:
                        names.add(parent)
                        members.append(info(parent, tarfile.DIRTYPE, rng.choice([0o755, 0o700, 0o775])))

        for _ in range(rng.randint(20, 60)):
            choice = rng.random()
            if n > 0 and prior and choice < 0.15:
                # delete something an earlier layer made: a whiteout, or an opaque directory
                target = rng.choice(sorted(prior))
                if kinds.get(target) is None:
                    continue
                head, _, tail = target.rpartition("/")
                opaque = kinds[target] == "dir" and rng.random() < 0.3
                wh = target + "/.wh..wh..opq" if opaque else (head + "/" if head else "") + ".wh." + tail
                if wh in names or target in names or any(x.startswith(target + "/") for x in names):
                    continue
                names.add(wh)
                members.append(info(wh))
                for path in [p for p in kinds if p.startswith(target + "/") or (p == target and not opaque)]:
                    del kinds[path]
                continue
            depth = rng.randint(1, 4)
            parts = [rng.choice("abcdef") + rng.choice("xyz") for _ in range(depth)]
            path = "/".join(parts)
            if path in names or any(kinds.get("/".join(parts[:i]), "dir") != "dir" for i in range(1, depth)):
                continue
            if any(w.endswith(".wh." + parts[-1]) or w.endswith(".wh..wh..opq") for w in names if w.startswith("/".join(parts[:-1]))):
                continue
            existing = kinds.get(path)
            kind = rng.random()
            if kind < 0.55 and existing in (None, "file"):
                size = rng.choice([0, 1, 100, 4095, 131072, 131073, 300000])
                add_parents(parts)
                members.append(info(path, data=rng.randbytes(size), mode=rng.choice([0o644, 0o600, 0o755, 0o4755])))
                kinds[path] = "file"
            elif kind < 0.7 and existing in (None, "dir"):
                add_parents(parts)
                members.append(info(path, tarfile.DIRTYPE, 0o755))
                kinds[path] = "dir"
            elif kind < 0.8 and existing in (None, "link"):
                add_parents(parts)
                members.append(info(path, tarfile.SYMTYPE, 0o777, linkname=rng.choice(["x", "../y", "/abs"])))
                kinds[path] = "link"
            elif existing in (None, "file"):
                targets = [m[0].name for m in members if m[0].type == tarfile.REGTYPE and not m[0].name.rpartition("/")[2].startswith(".wh.")]
                if targets:
                    add_parents(parts)
                    members.append(info(path, tarfile.LNKTYPE, linkname=rng.choice(targets)))
                    kinds[path] = "file"
            names.add(path)
        write_layer(f"{out}/{n + 1}.tar", members)
    finish(out, ["1", "2", "3"])


def small_files(out, seed):
    """Two layers of many small files (and some with full blocks), a third of them repeated
    contents: many fragment blocks, compressed by the workers and written between files."""
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    contents = [rng.randbytes(rng.choice([1, 100, 3000, 5000, 9000, 20000])) for _ in range(200)]
    for n in range(2):
        members = [info(f"d{n}", tarfile.DIRTYPE, 0o755)]
        for i in range(1500):
            data = rng.choice(contents) if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 6000))
            members.append(info(f"d{n}/f{i}", data=data))
        write_layer(f"{out}/{n + 1}.tar", members)
    finish(out, ["1", "2"])


def replaced(out):
    """Paths a layer replaces with another kind of member, in the same layer or over a lower one:
    what umoci makes of them is what extracting the layers in order gives."""
    os.makedirs(out, exist_ok=True)
    d = lambda name: info(name, tarfile.DIRTYPE, 0o755)
    f = lambda name, data=b"x": info(name, data=data)
    # 1: a directory with members, later replaced in the same layer by a file, and again by a
    #    directory in the layer above (umoci: only the upper layer's members remain).
    # 2: a lower directory with members; the layer above replaces it by a file, then by a
    #    directory (umoci: the lower members are gone).
    # 3: the same as 1, nested: a file replaces a directory whose subdirectory the layer above
    #    fills again.
    # 5: hard links to a hard link that the layer above replaces (h2) or whites out (k2): h3 and
    #    k3 still share their targets' data.
    # 4: a lower directory that the layer above replaces by a file (w) or a symbolic link (v),
    #    followed by whiteouts below it in that layer, as umoci 0.4 writes them (umoci, Docker:
    #    the whiteouts delete nothing); and the whiteout first (u).
    write_layer(f"{out}/1.tar", [d("a"), f("a/x"), f("a"), d("b"), f("b/old"), d("c"), f("c/lower"), d("c/sub"), f("c/sub/z"), f("c"),
                                 d("w"), f("w/x"), d("v"), f("v/y"), d("u"), f("u/z"), d("t"),
                                 f("h1", b"linked"), info("h2", tarfile.LNKTYPE, linkname="h1"), info("h3", tarfile.LNKTYPE, linkname="h2"),
                                 f("k1", b"linked too"), info("k2", tarfile.LNKTYPE, linkname="k1"), info("k3", tarfile.LNKTYPE, linkname="k2")])
    write_layer(f"{out}/2.tar", [d("a"), f("a/y"), f("b"), d("b"), f("b/new"), d("c"), d("c/sub"), f("c/sub/upper"),
                                 f("w", b"now a file"), f("w/.wh.x", b""),
                                 info("v", tarfile.SYMTYPE, 0o777, linkname="t"), f("v/.wh.y", b""),
                                 f("u/.wh.z", b""), f("u", b"also a file"), f("h2", b"replaced"), f(".wh.k2", b"")])
    finish(out, ["1", "2"])


def finish(out, layers):
    """gzip copies of the layers and an OCI image layout holding them, tag t."""
    layout = f"{out}/layout"
    os.makedirs(f"{layout}/blobs/sha256", exist_ok=True)
    with open(f"{layout}/oci-layout", "w") as fh:
        json.dump({"imageLayoutVersion": "1.0.0"}, fh)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(f"{layout}/blobs/sha256/{digest}", "wb") as fh:
            fh.write(data)
        return "sha256:" + digest, len(data)

    descriptors, diff_ids = [], []
    for name in layers:
        raw = open(f"{out}/{name}.tar", "rb").read()
        packed = gzip.compress(raw, mtime=0)
        with open(f"{out}/{name}.tar.gz", "wb") as fh:
            fh.write(packed)
        digest, size = blob(packed)
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdigest, csize = blob(json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
                "layers": descriptors}
    mdigest, msize = blob(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                 "digest": mdigest, "size": msize,
                                                 "annotations": {"org.opencontainers.image.ref.name": "t"}}]}
    with open(f"{layout}/index.json", "w") as fh:
        json.dump(index, fh)
    print(json.dumps({"tar": [f"{out}/{n}.tar" for n in layers], "gzip": [f"{out}/{n}.tar.gz" for n in layers],
                      "layout": layout, "manifest": mdigest}))


def bad(out):
    """One layer per kind of bad input; the tests expect a clear error for each."""
    os.makedirs(out, exist_ok=True)
    f = lambda name, data=b"": info(name, data=data)
    write_layer(f"{out}/dotdot.tar", [f("ok", b"1"), f("a/../../evil", b"x")])
    write_layer(f"{out}/absolute.tar", [f("/etc/passwd", b"x")])
    write_layer(f"{out}/hardlink-missing.tar", [f("a", b"1"), info("b", tarfile.LNKTYPE, linkname="nowhere")])
    write_layer(f"{out}/hardlink-later.tar", [info("b", tarfile.LNKTYPE, linkname="a"), f("a", b"1")])
    write_layer(f"{out}/longname.tar", [f("dir/" + "x" * 300, b"1")])
    write_layer(f"{out}/nul.tar", [info("a", data=b"1", pax_headers={"path": "a\x00b"})])
    write_layer(f"{out}/longlink.tar", [info("l", tarfile.SYMTYPE, linkname="t" * 5000)])
    write_layer(f"{out}/bigdevice.tar", [info("dev", tarfile.CHRTYPE, devmajor=5000, devminor=1)])
    write_layer(f"{out}/biguid.tar", [info("u", data=b"1", pax_headers={"uid": str(1 << 40)})])
    write_layer(f"{out}/dotfile.tar", [info("d", tarfile.DIRTYPE, 0o755), f("d/a", b"1"), f("d/.", b"dot")])
    top = str((1 << 63) - 1)
    write_layer(f"{out}/bigsize.tar", [info("d", tarfile.DIRTYPE, 0o755, pax_headers={"size": top})])
    write_layer(f"{out}/sparse-overflow.tar", [info("s", data=b"abcd", pax_headers={"GNU.sparse.map": "9223372036854775806,4", "GNU.sparse.realsize": top})])
    write_layer(f"{out}/sparse-huge.tar", [info("s", data=b"abcd", pax_headers={"GNU.sparse.map": "0,4", "GNU.sparse.realsize": str(1 << 44)})])
    write_layer(f"{out}/good.tar", [f("file", rand_bytes(random.Random(1), 200000))])
    raw = open(f"{out}/good.tar", "rb").read()
    with open(f"{out}/truncated.tar", "wb") as fh:
        fh.write(raw[:100000])
    packed = gzip.compress(raw, mtime=0)
    with open(f"{out}/truncated.tar.gz", "wb") as fh:
        fh.write(packed[: len(packed) // 2])
    # Only the CRC-32 and length at the end are missing: every tar byte decodes.
    with open(f"{out}/trailer.tar.gz", "wb") as fh:
        fh.write(packed[:-4])
    damaged = bytearray(packed)
    for i in range(len(damaged) // 3, len(damaged) // 3 + 64):
        damaged[i] ^= 0x55
    with open(f"{out}/corrupt.tar.gz", "wb") as fh:
        fh.write(damaged)
    open(f"{out}/empty.tar", "wb").close()
    with open(f"{out}/garbage.tar", "wb") as fh:
        fh.write(b"this is not a tar archive\n" * 40)
    subprocess.run(["zstd", "-q", "-f", f"{out}/good.tar", "-o", f"{out}/good.tar.zst"], check=True)
    z = bytearray(open(f"{out}/good.tar.zst", "rb").read())
    with open(f"{out}/cut.tar.zst", "wb") as fh:
        fh.write(z[:-3])
    for i in range(len(z) // 2, len(z) // 2 + 64):
        z[i] ^= 0x55
    with open(f"{out}/corrupt.tar.zst", "wb") as fh:
        fh.write(z)


def scan(root, owners, security=True):
    entries, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            entry = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode))}
            if owners:
                entry["owner"] = (st.st_uid, st.st_gid)
            if stat.S_ISREG(kind):
                with open(full, "rb") as fh:
                    entry["sha"] = hashlib.sha256(fh.read()).hexdigest()
                entry["mtime"] = int(st.st_mtime)
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(kind):
                entry["target"] = os.readlink(full)
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                entry["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            try:
                names = sorted(n for n in os.listxattr(full, follow_symlinks=False)
                               if n.startswith(("user.", "security.") if security else ("user.",)) and n != "security.selinux")
                entry["xattrs"] = {n: os.getxattr(full, n, follow_symlinks=False).hex() for n in names}
            except OSError:
                entry["xattrs"] = {}
            entries[rel] = entry
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return entries, groups


def compare(a, b, owners, security):
    ea, ga = scan(a, owners, security)
    eb, gb = scan(b, owners, security)
    problems = []
    for path in sorted(set(ea) | set(eb)):
        if path not in ea:
            problems.append(f"only in {b}: {path}")
        elif path not in eb:
            problems.append(f"only in {a}: {path}")
        elif ea[path] != eb[path]:
            problems.append(f"differs: {path}: {ea[path]} != {eb[path]}")
    if ga != gb:
        problems.append(f"hard-link groups differ: {ga} != {gb}")
    for p in problems:
        print(p)
    print(f"compared {len(ea)} entries, {len(ga)} hard-link groups")
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "tricky":
        tricky(sys.argv[2])
    elif command == "bad":
        bad(sys.argv[2])
    elif command == "replaced":
        replaced(sys.argv[2])
    elif command == "random":
        random_layers(sys.argv[2], int(sys.argv[3]))
    elif command == "small":
        small_files(sys.argv[2], int(sys.argv[3]))
    elif command == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], "--owners" in sys.argv, "--no-security-xattrs" not in sys.argv))
    else:
        sys.exit(f"unknown command {command}")
