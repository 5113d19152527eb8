#!/usr/bin/env python3
"""A small image for ns-enter's tests, as one tar layer (img-squash turns it into a squashfs).

  runtime_fixture.py OUT.tar

The tree: Debian's statically linked busybox as /bin/busybox with its applets as symbolic links,
/etc/passwd and /etc/group with root only, /data/hello.txt, a setuid-root copy of busybox
(/bin/busybox-suid), a file that is not executable (/bin/not-executable), a script whose
interpreter is missing (/bin/no-interpreter), /work (a WorkingDir), and symbolic links that try to
leave the root (/escape-abs -> ESCAPE, /escape-rel -> ../../../../../../ESCAPE, where ESCAPE is
the second argument, a host path that must never be created) or lead into the host's /dev that
the container binds (/escape-dev -> /dev/shm/<ESCAPE's name>).
"""
import io
import sys
import tarfile

MTIME = 1700000000
APPLETS = ["sh", "ls", "cat", "id", "echo", "env", "pwd", "sleep", "true", "false", "touch", "mkdir",
           "grep", "kill", "stat", "wc", "head", "tail", "readlink", "test", "printf", "df", "rm", "dd"]


def add(tar, name, kind=tarfile.REGTYPE, mode=0o644, data=b"", **extra):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    for key, value in extra.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def main():
    out, escape = sys.argv[1], sys.argv[2]
    busybox = open("/bin/busybox", "rb").read()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ["bin", "etc", "data", "work", "tmp", "opt", "run", "var"]:
            add(tar, directory, tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755)
        add(tar, "bin/busybox", mode=0o755, data=busybox)
        for applet in APPLETS:
            add(tar, "bin/" + applet, tarfile.SYMTYPE, 0o777, linkname="busybox")
        add(tar, "bin/busybox-suid", mode=0o4755, data=busybox)
        add(tar, "bin/not-executable", mode=0o644, data=b"#!/bin/sh\necho never\n")
        add(tar, "bin/no-interpreter", mode=0o755, data=b"#!/nonexistent/interpreter\n")
        add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n")
        add(tar, "etc/group", data=b"root:x:0:\n")
        add(tar, "data/hello.txt", data=b"hello from the image\n")
        # As on Fedora and RHEL: a ".." step in a path the runtime mounts on.
        add(tar, "var/run", tarfile.SYMTYPE, 0o777, linkname="../run")
        add(tar, "escape-abs", tarfile.SYMTYPE, 0o777, linkname=escape)
        add(tar, "escape-rel", tarfile.SYMTYPE, 0o777, linkname="../../../../../.." + escape)
        add(tar, "escape-dev", tarfile.SYMTYPE, 0o777, linkname="/dev/shm/" + escape.rsplit("/", 1)[-1])


main()
