#!/usr/bin/env python3
"""Images and a fake host for the site hooks' tests (contrib/hooks.d), built from this machine's
own files and small libraries compiled here (clang, else cc).

  hooks_fixture.py OUT_DIR

Writes:
  OUT_DIR/glibc.tar   a glibc image (Debian's loader, glibc's libraries and static ldconfig from this host,
                      busybox): /etc/ld.so.conf(.d), its own libfabric.so.1 (1.15.2) and
                      libmpi.so.12 (12.1.0) in /usr/lib/x86_64-linux-gnu, a linker cache made
                      by ldconfig, and /usr/bin/fabric-probe, /usr/bin/mpi-probe: programs that
                      print which libfabric / libmpi they loaded ("image" or "host").
  OUT_DIR/image-fabric/libfabric.so.1   the glibc image's libfabric build, alone.
  OUT_DIR/musl.tar    a musl image (Alpine's layout: /lib/ld-musl-x86_64.so.1 from Debian's
                      musl package, busybox, /etc/alpine-release), no glibc linker configuration.
  OUT_DIR/host/       the fake host: lib/ (libfabric.so.1.22.0 "host", which loads libcxi.so.1
                      and libhostdep.so.3), mpi/libmpi.so.12.5.5, mpi13/libmpi.so.13.0.0,
                      nvidia/ (libcuda.so.535.104.05, libnvidia-ml.so.535.104.05, nvidia-smi,
                      nvidia-cuda-mps-control), aws-ofi-nccl/cuda-dl/lib/libnccl-net.so,
                      dcgm/libdcgm.so.3.2.5, and ld.so.cache: its linker cache (made by ldconfig
                      -C over those directories and the system's).
Needs root (ldconfig -r chroots).
"""
import os
import shutil
import subprocess
import sys
import tarfile

MTIME = 1700000000
APPLETS = ["sh", "ls", "cat", "echo", "env", "test", "grep", "sleep", "id", "readlink", "true", "printf", "wc", "kill", "mv", "tr"]


def compiler():
    for name in ["clang", "cc", "gcc"]:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("hooks_fixture.py: error: no C compiler (clang or cc) on PATH")


def build_library(out, soname, source, links=(), runpath=None):
    directory = os.path.dirname(out)
    os.makedirs(directory, exist_ok=True)
    c_file = out + ".c"
    with open(c_file, "w") as handle:
        handle.write(source)
    command = [compiler(), "-shared", "-fPIC", "-o", out, c_file, "-Wl,-soname," + soname, "-Wl,--no-as-needed"]
    for link in links:
        command += ["-L" + os.path.dirname(link), "-l:" + os.path.basename(link)]
    if runpath:
        command += ["-Wl,--enable-new-dtags,-rpath," + runpath]
    subprocess.run(command, check=True)
    os.unlink(c_file)
    if soname != os.path.basename(out):
        os.symlink(os.path.basename(out), os.path.join(directory, soname))


def build_library32(out, soname, source):
    """A 32-bit (i386) shared object that needs libc.so.6 (ldconfig then lists it as a libc6
    library, as it lists a real driver's), or False when the compiler cannot make one here. It is
    linked against a stub libc.so.6 made for the purpose: no 32-bit C library is needed."""
    directory = os.path.dirname(out)
    os.makedirs(directory, exist_ok=True)
    stub = os.path.abspath(sys.argv[1]) + "/build/libc32"  # removed with the rest of build/
    base = [compiler(), "-m32", "-shared", "-fPIC", "-nostdlib"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if not os.path.exists(stub + "/libc.so.6"):
        os.makedirs(stub, exist_ok=True)
        with open(stub + "/libc.c", "w") as handle:
            handle.write("int libc_stub(void) { return 0; }\n")
        if subprocess.run(base + ["-o", stub + "/libc.so.6", stub + "/libc.c", "-Wl,-soname,libc.so.6"], **quiet).returncode != 0:
            return False
    c_file = out + ".c"
    with open(c_file, "w") as handle:
        handle.write(source)
    made = subprocess.run(base + ["-o", out, c_file, "-Wl,-soname," + soname, "-Wl,--no-as-needed", "-L" + stub, "-l:libc.so.6"],
                          **quiet).returncode == 0
    os.unlink(c_file)
    if made and soname != os.path.basename(out):
        os.symlink(os.path.basename(out), os.path.join(directory, soname))
    return made


def build_program(out, source, library):
    c_file = out + ".c"
    with open(c_file, "w") as handle:
        handle.write(source)
    subprocess.run([compiler(), "-o", out, c_file, "-L" + os.path.dirname(library), "-l:" + os.path.basename(library)],
                   check=True)
    os.unlink(c_file)


def origin_library(function, origin, calls=()):
    declarations = "".join("int %s(void);\n" % call for call in calls)
    body = "".join("  (void)%s();\n" % call for call in calls)
    return '%sconst char *%s(void) {\n%s  return "%s";\n}\n' % (declarations, function, body, origin)


def probe(function):
    return ('#include <stdio.h>\nconst char *%s(void);\nint main(void) { printf("%%s\\n", %s()); return 0; }\n'
            % (function, function))


def busybox(root):
    os.makedirs(root + "/bin", exist_ok=True)
    shutil.copy("/bin/busybox", root + "/bin/busybox")
    for applet in APPLETS:
        os.symlink("busybox", root + "/bin/" + applet)
    for directory in ["etc", "tmp", "data", "usr/bin"]:
        os.makedirs(root + "/" + directory, exist_ok=True)
    os.chmod(root + "/tmp", 0o1777)
    with open(root + "/etc/passwd", "w") as handle:
        handle.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(root + "/etc/group", "w") as handle:
        handle.write("root:x:0:\n")
    with open(root + "/data/hello.txt", "w") as handle:
        handle.write("hello from the image\n")


def tar(root, out):
    def owner(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = MTIME
        return info
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(os.listdir(root)):
            archive.add(os.path.join(root, name), arcname=name, filter=owner)


def glibc_image(out, work):
    root = work + "/glibc-root"
    busybox(root)
    multiarch = root + "/usr/lib/x86_64-linux-gnu"
    os.makedirs(multiarch)
    os.makedirs(root + "/lib64")
    os.makedirs(root + "/sbin")
    os.makedirs(root + "/etc/ld.so.conf.d")
    os.symlink("usr/lib", root + "/lib")
    shutil.copy(os.path.realpath("/lib64/ld-linux-x86-64.so.2"), root + "/lib64/ld-linux-x86-64.so.2")
    # glibc's own libraries (what a Debian image has): host programs the hooks bring in need them.
    for name in ["libc.so.6", "libm.so.6", "libresolv.so.2", "libpthread.so.0", "libdl.so.2", "librt.so.1"]:
        if os.path.exists("/lib/x86_64-linux-gnu/" + name):
            shutil.copy(os.path.realpath("/lib/x86_64-linux-gnu/" + name), multiarch + "/" + name)
    shutil.copy("/sbin/ldconfig", root + "/sbin/ldconfig")
    with open(root + "/etc/ld.so.conf", "w") as handle:
        handle.write("include /etc/ld.so.conf.d/*.conf\n")
    with open(root + "/etc/ld.so.conf.d/x86_64-linux-gnu.conf", "w") as handle:
        handle.write("/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n")
    build_library(multiarch + "/libfabric.so.1.15.2", "libfabric.so.1", origin_library("fabric_origin", "image"))
    build_library(multiarch + "/libmpi.so.12.1.0", "libmpi.so.12", origin_library("mpi_origin", "image"))
    # The image's own 32-bit NVML (as a 32-bit compatibility package would bring), for compat32.
    if build_library32(root + "/usr/lib/i386-linux-gnu/libnvidia-ml.so.470.1", "libnvidia-ml.so.1", "int nvmlInit(void) { return 32; }\n"):
        with open(root + "/etc/ld.so.conf.d/i386-linux-gnu.conf", "w") as handle:
            handle.write("/usr/lib/i386-linux-gnu\n")
    build_program(root + "/usr/bin/fabric-probe", probe("fabric_origin"), multiarch + "/libfabric.so.1")
    build_program(root + "/usr/bin/mpi-probe", probe("mpi_origin"), multiarch + "/libmpi.so.12")
    subprocess.run(["/sbin/ldconfig", "-r", root], check=True)
    tar(root, out)


def musl_image(out, work):
    root = work + "/musl-root"
    busybox(root)
    os.makedirs(root + "/lib")
    shutil.copy(os.path.realpath("/lib/ld-musl-x86_64.so.1"), root + "/lib/ld-musl-x86_64.so.1")
    with open(root + "/etc/alpine-release", "w") as handle:
        handle.write("3.20.0\n")
    tar(root, out)


def host(out):
    lib = out + "/lib"
    build_library(lib + "/libhostdep.so.3.0.0", "libhostdep.so.3", "int hostdep_value(void) { return 3; }\n")
    build_library(lib + "/libcxi.so.1.5.0", "libcxi.so.1", "int cxi_version(void) { return 1; }\n")
    build_library(lib + "/libfabric.so.1.22.0", "libfabric.so.1",
                  origin_library("fabric_origin", "host", ["cxi_version", "hostdep_value"]),
                  [lib + "/libcxi.so.1", lib + "/libhostdep.so.3"])
    build_library(out + "/mpi/libmpi.so.12.5.5", "libmpi.so.12", origin_library("mpi_origin", "host"))
    build_library(out + "/mpi/libmpicxx.so.12.5.5", "libmpicxx.so.12", "int mpicxx_value = 12;\n")
    # A Cray-style build: the file named as MPICH's ABI, its soname its own.
    build_library(out + "/cray/libmpi.so.12.5.5", "libmpich_gnu_71.so.3", origin_library("mpi_origin", "cray"))
    build_library(out + "/mpi13/libmpi.so.13.0.0", "libmpi.so.13", origin_library("mpi_origin", "host13"))
    nvidia = out + "/nvidia"
    build_library(nvidia + "/libcuda.so.535.104.05", "libcuda.so.1",
                  "int cuInit(unsigned flags) { return 0; }\n"
                  "int cuDriverGetVersion(int *version) { *version = 12020; return 0; }\n")
    build_library(nvidia + "/libnvidia-ml.so.535.104.05", "libnvidia-ml.so.1", "int nvmlInit(void) { return 0; }\n")
    with open(nvidia + "/nvidia-smi", "w") as handle:
        handle.write("#!/bin/sh\necho 'NVIDIA-SMI (fake) GPUs:' $(ls /dev | grep '^nvidia[0-9]')\n")
    # Started inside the container by the MPS hook: shows where it runs, then waits to be stopped.
    with open(nvidia + "/nvidia-cuda-mps-control", "w") as handle:
        handle.write("#!/bin/sh\n[ \"$1\" = -f ] || exit 2\ncat /data/hello.txt > \"$CUDA_MPS_PIPE_DIRECTORY/.started\"\n"
                     "mv \"$CUDA_MPS_PIPE_DIRECTORY/.started\" \"$CUDA_MPS_PIPE_DIRECTORY/started\"\n"
                     "exec sleep 1000\n")
    os.chmod(nvidia + "/nvidia-smi", 0o755)
    os.chmod(nvidia + "/nvidia-cuda-mps-control", 0o755)
    # The driver's 32-bit libraries (compat32), where the compiler can make i386 objects.
    nvidia32 = out + "/nvidia32"
    os.makedirs(nvidia32, exist_ok=True)
    for name, soname in [("libcuda.so.535.104.05", "libcuda.so.1"), ("libnvidia-ml.so.535.104.05", "libnvidia-ml.so.1")]:
        build_library32(nvidia32 + "/" + name, soname, "int nvidia32(void) { return 32; }\n")
    build_library(out + "/aws-ofi-nccl/cuda-dl/lib/libnccl-net.so", "libnccl-net.so", "int ncclNetPlugin_v8 = 8;\n")
    # A netstack artifact (spec 1.13): a flat directory whose libfabric finds what it loads through
    # its run path; it bundles a libstdc++ that must never reach the image's programs.
    artifact = out + "/netstack/" + os.uname().machine + "/26.05.1/default"
    build_library(artifact + "/libartdep.so.7", "libartdep.so.7", "int artdep_value(void) { return 7; }\n")
    build_library(artifact + "/libcxi.so.1", "libcxi.so.1", "int cxi_version(void) { return 2; }\n")
    build_library(artifact + "/libfabric.so.1", "libfabric.so.1",
                  origin_library("fabric_origin", "artifact", ["cxi_version", "artdep_value"]),
                  [artifact + "/libcxi.so.1", artifact + "/libartdep.so.7"], runpath=artifact)
    build_library(artifact + "/libstdc++.so.6", "libstdc++.so.6", "int artifact_libstdcxx = 6;\n")
    build_library(artifact + "/libnccl-net.so", "libnccl-net.so", 'const char *plugin = "artifact-plugin";\n')
    os.symlink("26.05.1", out + "/netstack/" + os.uname().machine + "/latest")
    build_library(out + "/dcgm/libdcgm.so.3.2.5", "libdcgm.so.3", "int dcgmInit(void) { return 0; }\n")
    with open(out + "/ld.so.conf", "w") as handle:
        handle.write("\n".join([lib, out + "/mpi", nvidia, nvidia32, out + "/dcgm"]) + "\n")
    subprocess.run(["/sbin/ldconfig", "-X", "-f", out + "/ld.so.conf", "-C", out + "/ld.so.cache"], check=True)


def main():
    out = os.path.abspath(sys.argv[1])
    work = out + "/build"
    os.makedirs(work, exist_ok=True)
    glibc_image(out + "/glibc.tar", work)
    # The image's libfabric build on its own, for an image that keeps it outside the linker's
    # directories (found through LD_LIBRARY_PATH, as HPC images often do).
    os.makedirs(out + "/image-fabric")
    shutil.copy(work + "/glibc-root/usr/lib/x86_64-linux-gnu/libfabric.so.1.15.2", out + "/image-fabric/libfabric.so.1")
    musl_image(out + "/musl.tar", work)
    host(out + "/host")
    shutil.rmtree(work)


main()
