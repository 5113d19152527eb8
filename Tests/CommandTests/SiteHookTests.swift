import Foundation
import Testing

/// The site hooks of contrib/hooks.d, run by ns-enter as an ordinary user on images and a fake
/// host made by Tests/Fixtures/hooks_fixture.py: a glibc image and a musl (Alpine-like) one,
/// libraries compiled here with their sonames, a host linker cache made by ldconfig, device
/// nodes, Debian's Dropbear.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SiteHookTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixture = repository.appendingPathComponent("Tests/Fixtures/hooks_fixture.py").path

    struct Hosted {
        var base: NamespaceEnterTests.Setup
        var glibc: NamespaceEnterTests.Setup
        var musl: NamespaceEnterTests.Setup
        /// The fake host's files.
        var host: String
        /// TOOLBOX_SYSCONF_PATH: hooks.d (a copy of contrib/hooks.d) and hooks.conf.d.
        var sysconf: String
        var box: Sandbox { base.box }

        func configure(_ hook: String, _ text: String) throws {
            try box.write("sysconf/hooks.conf.d/\(hook).conf", text)
        }

        /// ns-enter as the user with the site hooks; the Slurm hook off unless asked for.
        func run(_ image: NamespaceEnterTests.Setup, _ arguments: [String], environment: [String: String] = [:]) throws -> ToolResult {
            var variables = ["TOOLBOX_SYSCONF_PATH": sysconf, "ENROOT_SLURM_HOOK": "0", "HOME": "/home/tbxtest"]
            variables.merge(environment) { _, new in new }
            return try NamespaceEnterTests.run(image, ["--image", image.image] + arguments, environment: variables)
        }
    }

    static func setUp() throws -> Hosted? {
        guard let base = try NamespaceEnterTests.setUp() else { return nil }
        let missing = ["/sbin/ldconfig", "/lib/ld-musl-x86_64.so.1", "/usr/sbin/dropbear"].filter { !FileManager.default.fileExists(atPath: $0) }
        guard missing.isEmpty else {
            print("skipped: \(missing.joined(separator: ", ")) missing (contrib/install-deps.sh installs libc-bin, musl, dropbear-bin)")
            return nil
        }
        let box = base.box
        let made = try Tools.run(absolute: "/usr/bin/python3", [fixture, box.path + "/fixture"], environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], in: box.url)
        try #require(made.status == 0, "\(made)")
        var glibc = base
        var musl = base
        for name in ["glibc", "musl"] {
            let squashed = try box.run("img-squash", ["-q", "-o", box.path + "/\(name).sqsh", box.path + "/fixture/\(name).tar"])
            try #require(squashed.status == 0, "\(squashed)")
        }
        glibc.image = box.path + "/glibc.sqsh"
        musl.image = box.path + "/musl.sqsh"
        try box.mkdir("sysconf/hooks.conf.d")
        let copied = try Tools.run(
            absolute: "/bin/cp", ["-R", repository.appendingPathComponent("contrib/hooks.d").path, box.path + "/sysconf/hooks.d"], in: box.url)
        try #require(copied.status == 0, "\(copied)")
        return Hosted(base: base, glibc: glibc, musl: musl, host: box.path + "/fixture/host", sysconf: box.path + "/sysconf")
    }

    @Test func cxiAndNCCLReplaceTheImagesLibfabricOnGlibcAndMuslImages() throws {
        guard let hosted = try Self.setUp() else { return }
        let cache = hosted.host + "/ld.so.cache"
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\n")
        try hosted.configure("aws-ofi-nccl", "AWS_OFI_NCCL_ROOT=\(hosted.host)/aws-ofi-nccl\n")
        let probe = "fabric-probe; ldconfig -p | grep -E 'libfabric|libcxi|libhostdep' | sed 's/ (.*=>/ =>/'"

        // Off (no annotation): the image's own libfabric.
        let off = try hosted.run(hosted.glibc, ["--", "/bin/sh", "-c", "PATH=/usr/bin:/sbin:/bin; fabric-probe; test -e /opt/toolbox || echo clean"])
        #expect(off.status == 0 && off.stdout == "image\nclean\n", "\(off)")

        // On: the host's libfabric over the image's, its dependencies added, the cache refreshed.
        let on = try hosted.run(hosted.glibc, ["--annotation", "com.hooks.cxi.enabled=true", "--", "/bin/sh", "-c", "PATH=/usr/bin:/sbin:/bin; " + probe])
        #expect(on.status == 0, "\(on)")
        #expect(
            on.stdout == """
                host
                \tlibhostdep.so.3 => /opt/toolbox/cxi/lib/libhostdep.so.3
                \tlibfabric.so.1 => /lib/x86_64-linux-gnu/libfabric.so.1
                \tlibcxi.so.1 => /opt/toolbox/cxi/lib/libcxi.so.1

                """, "\(on)")

        // The image's libfabric outside the linker's directories, found through LD_LIBRARY_PATH
        // (here a directory mounted from the sandbox): replaced there too.
        let box = hosted.box
        try box.mkdir("fabric-dir")
        try FileManager.default.copyItem(atPath: box.path + "/fixture/image-fabric/libfabric.so.1", toPath: box.path + "/fabric-dir/libfabric.so.1")
        let viaPath = try hosted.run(
            hosted.glibc,
            ["--mount", box.path + "/fabric-dir:/opt/fabric/lib", "--env", "LD_LIBRARY_PATH=/opt/fabric/lib", "--annotation", "com.hooks.cxi.enabled=true",
             "--", "/usr/bin/fabric-probe"])
        #expect(viaPath.status == 0 && viaPath.stdout == "host\n", "\(viaPath)")
        let withoutHook = try hosted.run(hosted.glibc, ["--mount", box.path + "/fabric-dir:/opt/fabric/lib", "--env", "LD_LIBRARY_PATH=/opt/fabric/lib", "--", "/usr/bin/fabric-probe"])
        #expect(withoutHook.stdout == "image\n", "\(withoutHook)")

        // On by the site's default (CXI_HOOK_DEFAULT in cxi.conf), without an annotation: the
        // hook's declaration names the setting, so it is started.
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\nCXI_HOOK_DEFAULT=true\n")
        let byDefault = try hosted.run(hosted.glibc, ["--", "/usr/bin/fabric-probe"])
        #expect(byDefault.status == 0 && byDefault.stdout == "host\n", "\(byDefault)")
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\n")

        // "false" wins over the NCCL hook's implicit CXI; the NCCL hook sets its variables, the
        // EDF's [env] wins over them.
        let nccl = try hosted.run(
            hosted.glibc,
            [
                "--annotation", "com.hooks.aws_ofi_nccl.enabled=true", "--env", "NCCL_PROTO=Simple", "--", "/bin/sh", "-c",
                "PATH=/usr/bin:/sbin:/bin; fabric-probe; ldconfig -p | grep -c libnccl-net.so; echo \"$NCCL_NET|$NCCL_PROTO|$FI_CXI_RDZV_PROTO\"",
            ])
        #expect(nccl.status == 0 && nccl.stdout == "host\n1\nAWS Libfabric|Simple|alt_read\n", "\(nccl)")
        let ncclWithoutCXI = try hosted.run(
            hosted.glibc,
            ["--annotation", "com.hooks.aws_ofi_nccl.enabled=true", "--annotation", "com.hooks.cxi.enabled=false", "--", "/usr/bin/fabric-probe"])
        #expect(ncclWithoutCXI.status == 0 && ncclWithoutCXI.stdout == "image\n", "\(ncclWithoutCXI)")
        let badVariant = try hosted.run(
            hosted.glibc, ["--annotation", "com.hooks.aws_ofi_nccl.enabled=true", "--annotation", "com.hooks.aws_ofi_nccl.variant=cuda99", "--", "true"])
        #expect(badVariant.status == 78, "\(badVariant)")
        #expect(badVariant.stderr.contains("aws-ofi-nccl hook: error: com.hooks.aws_ofi_nccl.variant is 'cuda99'\n  hint: use one of: cuda12 cuda13 cuda-dl rocm5 rocm6"), "\(badVariant)")

        // The netstack artifact: its libfabric and libcxi, which find what they load through their
        // run path in the artifact, mounted at its own path; nothing else of the artifact (its
        // libstdc++) reaches the image. The NCCL hook takes the artifact's plugin, the variant
        // ignored (none installed on the host).
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\nNETSTACK_BASE=\(hosted.host)/netstack\n")
        let artifact = try hosted.run(
            hosted.glibc,
            [
                "--annotation", "com.hooks.aws_ofi_nccl.enabled=true", "--annotation", "com.hooks.netstack.source=artifact",
                "--annotation", "com.hooks.aws_ofi_nccl.variant=cuda12", "--", "/bin/sh", "-c",
                "PATH=/usr/bin:/sbin:/bin; fabric-probe; ls /opt/toolbox /opt/toolbox/cxi/lib; ldconfig -p | grep -c 'libstdc++'; "
                    + "grep -c artifact-plugin /opt/toolbox/aws-ofi-nccl/lib/libnccl-net.so; test -e \(hosted.host)/netstack/x86_64/26.05.1/default/libstdc++.so.6 && echo mounted",
            ])
        #expect(artifact.status == 0, "\(artifact)")
        #expect(
            artifact.stdout == "artifact\n/opt/toolbox:\naws-ofi-nccl\ncxi\n\n/opt/toolbox/cxi/lib:\nlibartdep.so.7\nlibcxi.so.1\n0\n1\nmounted\n", "\(artifact)")
        #expect(artifact.stderr.contains("aws-ofi-nccl hook: com.hooks.aws_ofi_nccl.variant (cuda12) is ignored with the netstack artifact: its plugin is used\n"), "\(artifact)")
        let noArtifact = try hosted.run(
            hosted.glibc, ["--annotation", "com.hooks.cxi.enabled=true", "--annotation", "com.hooks.netstack.version=1.0", "--annotation", "com.hooks.netstack.source=artifact", "--", "true"])
        #expect(noArtifact.status == 78 && noArtifact.stderr.contains("cxi hook: error: no netstack artifact \(hosted.host)/netstack/x86_64/1.0/default\n"), "\(noArtifact)")
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\n")

        // A musl image: no glibc linker configuration, so LD_LIBRARY_PATH and a note, not a failure.
        let musl = try hosted.run(
            hosted.musl, ["--annotation", "com.hooks.cxi.enabled=true", "--", "/bin/sh", "-c", "echo $LD_LIBRARY_PATH; ls /opt/toolbox/cxi/lib"])
        #expect(musl.status == 0, "\(musl)")
        #expect(musl.stdout == "/opt/toolbox/cxi/lib\nlibcxi.so.1\nlibcxi.so.1.5.0\nlibfabric.so.1\nlibfabric.so.1.22.0\nlibhostdep.so.3\nlibhostdep.so.3.0.0\n", "\(musl)")
        #expect(musl.stderr.contains("toolbox-hook: note: the image has no glibc linker configuration (/etc/ld.so.conf; a musl image such as Alpine?)"), "\(musl)")

        // A library the host lacks: a clear error naming it and the cache.
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\nCXI_HOOK_LIBRARIES=libnotthere.so.1\n")
        let missing = try hosted.run(hosted.glibc, ["--annotation", "com.hooks.cxi.enabled=true", "--", "true"])
        #expect(missing.status == 78, "\(missing)")
        #expect(missing.stderr.contains("toolbox-hook: error: libnotthere.so.1 is not in the host's linker cache (\(cache))"), "\(missing)")
        #expect(NamespaceEnterTests.waitForNoLeftovers(hosted.base).isEmpty)
    }

    /// Every library hook at once (Slurm, CXI, NCCL, DCGM, NVIDIA) on the glibc image and on the
    /// musl one: both start; the musl one finds each hook's libraries through LD_LIBRARY_PATH.
    @Test func debianAndAlpineImagesStartWithTheLibraryHooksOn() throws {
        guard let hosted = try Self.setUp() else { return }
        let box = hosted.box
        let cache = hosted.host + "/ld.so.cache"
        try box.mkdir("dev")
        for name in ["nvidiactl", "nvidia0"] { #expect(mknod(box.path + "/dev/" + name, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0) }
        try box.write("slurm/bin/srun", "#!/bin/sh\necho srun\n")
        chmod(box.path + "/slurm/bin/srun", 0o755)
        // Only the fake srun: on a machine with Slurm and munge installed the hook would add the
        // libraries of their commands and libmunge.
        try hosted.configure("slurm", "SLURM_HOOK_COMMANDS=srun\nSLURM_HOOK_LIBRARIES=\nSLURM_HOOK_PATHS=\(box.path)/slurm/bin\nSLURM_HOOK_LDCACHE=\(cache)\n")
        try hosted.configure("cxi", "CXI_HOOK_LDCACHE=\(cache)\n")
        try hosted.configure("aws-ofi-nccl", "AWS_OFI_NCCL_ROOT=\(hosted.host)/aws-ofi-nccl\n")
        try hosted.configure("dcgm", "DCGM_HOOK_LIBRARIES='\(hosted.host)/dcgm/libdcgm.so.*'\n")
        try hosted.configure(
            "nvidia", "NVIDIA_HOOK_LDCACHE=\(cache)\nNVIDIA_HOOK_DEVICE_DIR=\(box.path)/dev\nNVIDIA_HOOK_BINARY_PATH=\(hosted.host)/nvidia\n")
        let annotations = ["com.hooks.cxi.enabled", "com.hooks.aws_ofi_nccl.enabled", "com.hooks.dcgm.enabled"].flatMap { ["--annotation", $0 + "=true"] }
        let environment = ["ENROOT_SLURM_HOOK": "", "ENROOT_RESTRICT_DEV": "y", "PATH": box.path + "/slurm/bin:/usr/bin:/bin"]
        let arguments = annotations + [
            "--env", "NVIDIA_VISIBLE_DEVICES=all", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "--", "/bin/sh", "-c",
            "\(box.path)/slurm/bin/srun; ls /dev | grep -c nvidia; ls /opt/toolbox | tr '\\n' ' '; echo; echo ${LD_LIBRARY_PATH:-no LD_LIBRARY_PATH}",
        ]
        // An ldconfig that counts its runs: the library hooks leave the refresh to hook-run, which
        // runs it once after the last hook.
        let counted = try box.write("ldconfig-counted", "#!/bin/sh\necho run >> \(box.path)/ldconfig.log\nexec /sbin/ldconfig \"$@\"\n")
        chmod(counted, 0o755)
        let log = try box.write("ldconfig.log", "")
        chmod(log, 0o666)  // the hooks run as the test user
        let glibc = try hosted.run(hosted.glibc, arguments, environment: environment.merging(["TOOLBOX_LDCONFIG": counted]) { $1 })
        #expect(glibc.status == 0, "\(glibc)")
        #expect(glibc.stdout == "srun\n2\naws-ofi-nccl cxi dcgm nvidia \nno LD_LIBRARY_PATH\n", "\(glibc)")
        let runs = (try? String(contentsOfFile: box.path + "/ldconfig.log", encoding: .utf8)) ?? ""
        #expect(runs == "run\n", "one ldconfig for four library hooks: \(runs)")
        let musl = try hosted.run(hosted.musl, arguments, environment: environment)
        #expect(musl.status == 0, "\(musl)")
        #expect(
            musl.stdout == "srun\n2\naws-ofi-nccl cxi dcgm nvidia \n/opt/toolbox/nvidia/lib:/opt/toolbox/dcgm/lib:/opt/toolbox/aws-ofi-nccl/lib:/opt/toolbox/cxi/lib\n",
            "\(musl)")
    }

    @Test func dcgmAddsItsLibrariesAndHookRunAloneReportsTheMounts() throws {
        guard let hosted = try Self.setUp() else { return }
        try hosted.configure("dcgm", "DCGM_HOOK_LIBRARIES='\(hosted.host)/dcgm/libdcgm.so.*'\n")
        let on = try hosted.run(
            hosted.glibc, ["--annotation", "com.hooks.dcgm.enabled=true", "--", "/bin/sh", "-c", "/sbin/ldconfig -p | grep libdcgm | sed 's/ (.*=>/ =>/'"])
        #expect(on.status == 0 && on.stdout == "\tlibdcgm.so.3 => /opt/toolbox/dcgm/lib/libdcgm.so.3\n", "\(on)")
        try hosted.configure("dcgm", "DCGM_HOOK_LIBRARIES=/nonexistent/libdcgm*\n")
        let absent = try hosted.run(hosted.glibc, ["--annotation", "com.hooks.dcgm.enabled=true", "--", "true"])
        #expect(absent.status == 78 && absent.stderr.contains("dcgm hook: error: DCGM is not installed on this node"), "\(absent)")

        // hook-run alone (nothing mounted): toolbox-hook records what it would mount.
        try hosted.configure("dcgm", "DCGM_HOOK_LIBRARIES='\(hosted.host)/dcgm/libdcgm.so.*'\n")
        try hosted.box.mkdir("rootdir/etc")
        let annotations = try hosted.box.write("annotations.json", #"{"com.hooks.dcgm.enabled": "true"}"#)
        let alone = try NamespaceEnterTests.run(
            hosted.base, ["--rootfs", hosted.box.path + "/rootdir", "--annotations", annotations], tool: "hook-run",
            environment: ["TOOLBOX_SYSCONF_PATH": hosted.sysconf, "ENROOT_SLURM_HOOK": "0"])
        #expect(alone.status == 0, "\(alone)")
        let report = try hosted.box.json(alone)
        let mounts = try #require(report["mounts"] as? [[String: Any]])
        #expect(mounts.map { $0["target"] as? String } == ["/opt/toolbox/dcgm/lib/libdcgm.so.3.2.5"], "\(alone)")
        // Hooks that declare when they run (# hook-run-when:) and do not apply are not started.
        let hooks = try #require(report["hooks"] as? [[String: Any]])
        let skipped = hooks.filter { $0["skipped"] as? Bool == true }.compactMap { ($0["path"] as? String)?.split(separator: "/").last }
        #expect(skipped == ["89-cxi.sh", "90-aws-ofi-nccl.sh", "91-mpi.sh", "95-ssh.sh", "98-nvidia.sh", "99-nvidia-cuda-mps.sh"], "\(alone)")
    }

    @Test func mpiHookChecksTheABIOfTheSonames() throws {
        guard let hosted = try Self.setUp() else { return }
        let run = { (libraries: String, type: String, image: NamespaceEnterTests.Setup) throws -> ToolResult in
            try hosted.configure("mpi", "MPI_LIBS='\(libraries)'\nMPI_COMPATIBILITY_TYPE=\(type)\nmpi_type_strict() { MPI_COMPATIBILITY_TYPE=strict; }\n")
            return try hosted.run(image, ["--annotation", "com.hooks.mpi.enabled=true", "--", "/usr/bin/mpi-probe"])
        }
        // 12.5.5 for the image's 12.1.0: major and full accept it, the program gets the host's.
        for type in ["major", "full"] {
            let accepted = try run(hosted.host + "/mpi/libmpi.so.12", type, hosted.glibc)
            #expect(accepted.status == 0 && accepted.stdout == "host\n", "\(type): \(accepted)")
        }
        // strict wants the minor numbers equal; the type is chosen by the annotation.
        try hosted.configure("mpi", "MPI_LIBS='\(hosted.host)/mpi/libmpi.so.12'\nmpi_type_strict() { MPI_COMPATIBILITY_TYPE=strict; }\n")
        let strict = try hosted.run(
            hosted.glibc, ["--annotation", "com.hooks.mpi.enabled=true", "--annotation", "com.hooks.mpi.type=strict", "--", "/usr/bin/mpi-probe"])
        #expect(strict.status == 78, "\(strict)")
        #expect(
            strict.stderr.contains(
                "toolbox-hook: error: the host's \(hosted.host)/mpi/libmpi.so.12.5.5 cannot replace the image's /lib/x86_64-linux-gnu/libmpi.so.12 (libmpi.so.12.1.0): the minor versions differ (5 on the host, 1 in the image) (strict ABI check)"),
            "\(strict)")
        let unknownType = try hosted.run(
            hosted.glibc, ["--annotation", "com.hooks.mpi.enabled=true", "--annotation", "com.hooks.mpi.type=openmpi", "--", "true"])
        #expect(unknownType.stderr.contains("mpi hook: error: the MPI type 'openmpi' is not configured on this system\n  hint: use com.hooks.mpi.type = one of: mpich strict"), "\(unknownType)")
        // Another major version: refused; an image without MPI: refused.
        let major = try run(hosted.host + "/mpi13/libmpi.so.13.0.0", "major", hosted.glibc)
        #expect(major.status == 78, "\(major)")
        #expect(major.stderr.contains("the major versions differ (13 on the host, 12 in the image) (major ABI check)"), "\(major)")
        let noMPI = try run(hosted.host + "/mpi/libmpi.so.12", "major", hosted.musl)
        #expect(noMPI.status == 78, "\(noMPI)")
        #expect(noMPI.stderr.contains("toolbox-hook: error: the image has no libmpi.so.* for the host's \(hosted.host)/mpi/libmpi.so.12.5.5 to replace"), "\(noMPI)")
        // A host library the image lacks (libmpicxx beside the image's C-only MPICH) is added, as
        // Sarus does; an image with none of them is refused.
        let extra = try run("\(hosted.host)/mpi/libmpi.so.12 \(hosted.host)/mpi/libmpicxx.so.12", "major", hosted.glibc)
        #expect(extra.status == 0 && extra.stdout == "host\n", "\(extra)")
        let listed = try hosted.run(hosted.glibc, ["--annotation", "com.hooks.mpi.enabled=true", "--", "/bin/sh", "-c", "ls /opt/toolbox/mpi/lib"])
        #expect(listed.status == 0 && listed.stdout == "libmpicxx.so.12\nlibmpicxx.so.12.5.5\n", "\(listed)")
        let none = try run("\(hosted.host)/mpi/libmpi.so.12 \(hosted.host)/mpi/libmpicxx.so.12", "major", hosted.musl)
        #expect(none.status == 78 && none.stderr.contains("toolbox-hook: error: the image has none of libmpi.so.*, libmpicxx.so.* for the host's libraries to replace"), "\(none)")
        // A file whose soname is not MPICH's (Cray's libmpi.so.12.5.5, soname libmpich_gnu_71.so.3):
        // matched by its file name, as Sarus matches.
        let cray = try run(hosted.host + "/cray/libmpi.so.12.5.5", "major", hosted.glibc)
        #expect(cray.status == 0 && cray.stdout == "cray\n", "\(cray)")
        // Disabled: the image's MPI.
        let off = try hosted.run(hosted.glibc, ["--", "/usr/bin/mpi-probe"])
        #expect(off.status == 0 && off.stdout == "image\n", "\(off)")
    }

    @Test func nvidiaHookInjectsTheVisibleGPUsAndMPSRunsInside() throws {
        guard let hosted = try Self.setUp() else { return }
        let devices = hosted.box.path + "/dev"
        try hosted.box.mkdir("dev")
        for name in ["nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1", "gdrdrv"] {
            // Character devices 1:3 (what /dev/null is): the container may open them.
            #expect(mknod(devices + "/" + name, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0)
        }
        try hosted.configure(
            "nvidia", "NVIDIA_HOOK_LDCACHE=\(hosted.host)/ld.so.cache\nNVIDIA_HOOK_DEVICE_DIR=\(devices)\nNVIDIA_HOOK_BINARY_PATH=\(hosted.host)/nvidia\n")
        let show = "PATH=/usr/bin:/sbin:/bin; ls /dev | grep nvidia | tr '\\n' ' '; echo; ldconfig -p | grep -E 'libcuda|libnvidia' | grep x86-64 | sed 's/ (.*=>/ =>/'; nvidia-smi"
        let restricted = ["ENROOT_RESTRICT_DEV": "y"]
        // GPU 0 only, compute and utility: its devices, libcuda and NVML, nvidia-smi.
        let one = try hosted.run(
            hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "--", "/bin/sh", "-c", show],
            environment: restricted)
        #expect(one.status == 0, "\(one)")
        #expect(
            one.stdout == """
                nvidia-uvm nvidia0 nvidiactl 
                \tlibnvidia-ml.so.1 => /opt/toolbox/nvidia/lib/libnvidia-ml.so.1
                \tlibcuda.so.1 => /opt/toolbox/nvidia/lib/libcuda.so.1
                \tlibcuda.so => /opt/toolbox/nvidia/lib/libcuda.so
                NVIDIA-SMI (fake) GPUs: nvidia0

                """, "\(one)")
        // With compute: GDRCopy's device and a libcuda.so link; capability lists with empty items.
        let extras = try hosted.run(
            hosted.glibc,
            [
                "--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=,compute,,utility", "--", "/bin/sh", "-c",
                "readlink /opt/toolbox/nvidia/lib/libcuda.so; test -c /dev/gdrdrv && echo gdrdrv; grep -c ' /opt/toolbox/nvidia/lib/libcuda.so.535.104.05 ' /proc/self/mountinfo",
            ], environment: restricted)
        #expect(extras.status == 0 && extras.stdout == "libcuda.so.1\ngdrdrv\n1\n", "\(extras)")
        let utilityOnly = try hosted.run(
            hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--", "/bin/sh", "-c", "test -e /dev/gdrdrv || echo no gdrdrv"], environment: restricted)
        #expect(utilityOnly.status == 0 && utilityOnly.stdout == "no gdrdrv\n", "\(utilityOnly)")
        // Indexes count in PCI bus order (as nvidia-smi does), not by minor number: here the GPU
        // at 01:00.0 has minor 1 and is index 0.
        for (bus, minor) in [("0000:01:00.0", 1), ("0000:02:00.0", 0)] {
            try hosted.box.write("proc/gpus/\(bus)/information", "Model: \t Fake\nGPU UUID: \t GPU-\(minor)\nDevice Minor: \t \(minor)\n")
        }
        let byBus = try hosted.run(
            hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--", "/bin/sh", "-c", "ls /dev | grep 'nvidia[0-9]'"],
            environment: restricted.merging(["NVIDIA_HOOK_PROC": hosted.box.path + "/proc"]) { $1 })
        #expect(byBus.status == 0 && byBus.stdout == "nvidia1\n", "\(byBus)")
        let beyond = try hosted.run(
            hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=2", "--", "true"],
            environment: restricted.merging(["NVIDIA_HOOK_PROC": hosted.box.path + "/proc"]) { $1 })
        #expect(beyond.status == 78 && beyond.stderr.contains("nvidia hook: error: NVIDIA_VISIBLE_DEVICES names GPU 2; this node has 2\n"), "\(beyond)")
        // An image's CUDA forward-compatibility libcuda, newer than the driver, stays in place.
        try hosted.box.mkdir("compat")
        try FileManager.default.copyItem(atPath: hosted.host + "/nvidia/libcuda.so.535.104.05", toPath: hosted.box.path + "/compat/libcuda.so.550.54.15")
        try FileManager.default.createSymbolicLink(atPath: hosted.box.path + "/compat/libcuda.so.1", withDestinationPath: "libcuda.so.550.54.15")
        let compatKept = try hosted.run(
            hosted.glibc,
            [
                "--mount", hosted.box.path + "/compat:/usr/local/cuda/compat", "--env", "LD_LIBRARY_PATH=/usr/local/cuda/compat",
                "--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "--", "/bin/sh", "-c",
                "grep -c ' /usr/local/cuda/compat/libcuda' /proc/self/mountinfo",
            ], environment: restricted)
        #expect(compatKept.stdout == "0\n", "\(compatKept)")
        #expect(
            compatKept.stderr.contains(
                "toolbox-hook: note: kept the image's /usr/local/cuda/compat/libcuda.so.1 (libcuda.so.550.54.15): a forward-compatibility build newer than the host's libcuda.so.535.104.05"),
            "\(compatKept)")
        // An image with an older libcuda of its own (a stale CUDA compat copy) in its library
        // directory: replaced by the driver's, with the libcuda.so link beside it as for an added one.
        // The glibc image with an older libcuda (a copy of the fake driver's, named 470.1) in
        // `directory`, linked as libcuda.so.1, and `conf` as a linker configuration file.
        func imageWithOldCuda(_ name: String, in directory: String, conf: String? = nil) throws -> NamespaceEnterTests.Setup {
            let layer = hosted.box.path + "/\(name).tar"
            let made = try Tools.run(
                absolute: "/usr/bin/python3",
                [
                    "-c",
                    """
                    import io, sys, tarfile
                    directory, conf = sys.argv[3], sys.argv[4]
                    with tarfile.open(sys.argv[1], 'w') as t:
                        t.add(sys.argv[2], directory + '/libcuda.so.470.1')
                        link = tarfile.TarInfo(directory + '/libcuda.so.1'); link.type = tarfile.SYMTYPE; link.linkname = 'libcuda.so.470.1'
                        t.addfile(link)
                        if conf:
                            info = tarfile.TarInfo('etc/ld.so.conf.d/' + conf); data = ('/' + directory + '\\n').encode(); info.size = len(data)
                            t.addfile(info, io.BytesIO(data))
                    """, layer, hosted.host + "/nvidia/libcuda.so.535.104.05", directory, conf ?? "",
                ], in: hosted.box.url)
            #expect(made.status == 0, "\(made)")
            var image = hosted.glibc
            image.image = hosted.box.path + "/\(name).sqsh"
            let squashed = try hosted.box.run("img-squash", ["-q", "-o", image.image, hosted.box.path + "/fixture/glibc.tar", layer])
            #expect(squashed.status == 0, "\(squashed)")
            return image
        }
        let gpu = ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "--", "/bin/sh", "-c"]
        let replacedOld = try hosted.run(
            try imageWithOldCuda("oldcuda", in: "usr/lib/x86_64-linux-gnu"),
            gpu + ["readlink /usr/lib/x86_64-linux-gnu/libcuda.so; grep -c ' /usr/lib/x86_64-linux-gnu/libcuda.so.470.1 ' /proc/self/mountinfo"],
            environment: restricted)
        #expect(replacedOld.status == 0 && replacedOld.stdout == "libcuda.so.1\n1\n", "\(replacedOld)")
        // A compat directory that a later layer added to the linker configuration without
        // rebuilding the image's linker cache: its older libcuda is found there all the same and
        // replaced (else ldconfig would later put it before the driver's).
        let replacedStale = try hosted.run(
            try imageWithOldCuda("stalecompat", in: "usr/local/cuda/compat", conf: "000-cuda-compat.conf"),
            gpu + ["grep -c ' /usr/local/cuda/compat/libcuda.so.470.1 ' /proc/self/mountinfo"], environment: restricted)
        #expect(replacedStale.status == 0 && replacedStale.stdout == "1\n", "\(replacedStale)")
        // compat32: the 32-bit builds too, where the host has them: libcuda added into lib32, the
        // image's own 32-bit NVML replaced (a bind mount over it); the 64-bit ones as before.
        if FileManager.default.fileExists(atPath: hosted.host + "/nvidia32/libcuda.so.1") {
            let show32 = "PATH=/usr/bin:/sbin:/bin; ldconfig -p | grep -E 'libcuda|libnvidia' | sed 's/^[[:space:]]*//' | sort; "
                + "grep -c ' /usr/lib/i386-linux-gnu/libnvidia-ml.so.470.1 ' /proc/self/mountinfo"
            let compat = try hosted.run(
                hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility,compat32", "--", "/bin/sh", "-c", show32],
                environment: restricted)
            #expect(compat.status == 0, "\(compat)")
            #expect(
                compat.stdout == """
                    libcuda.so (libc6,x86-64) => /opt/toolbox/nvidia/lib/libcuda.so
                    libcuda.so.1 (libc6) => /opt/toolbox/nvidia/lib32/libcuda.so.1
                    libcuda.so.1 (libc6,x86-64) => /opt/toolbox/nvidia/lib/libcuda.so.1
                    libnvidia-ml.so (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so
                    libnvidia-ml.so.1 (libc6) => /usr/lib/i386-linux-gnu/libnvidia-ml.so.1
                    libnvidia-ml.so.1 (libc6,x86-64) => /opt/toolbox/nvidia/lib/libnvidia-ml.so.1
                    1

                    """, "\(compat)")
            // A 64-bit file given as a 32-bit one (and the other way round) is refused.
            let wrongClass = try NamespaceEnterTests.run(
                hosted.base, ["inject", "--name", "x", "--root", hosted.box.path + "/fixture", "--compat32", hosted.host + "/nvidia/libcuda.so.1"],
                tool: "toolbox-hook")
            #expect(wrongClass.status == 65, "\(wrongClass)")
            #expect(wrongClass.stderr == "toolbox-hook: error: the library \(hosted.host)/nvidia/libcuda.so.1 is a 64-bit file, not a 32-bit one\n  hint: give the 32-bit build of the library with --compat32\n", "\(wrongClass)")
        } else {
            print("skipped: compat32 (this compiler cannot make i386 objects: no 32-bit libraries in the fake host)")
        }
        // The default capabilities (utility): NVML, no libcuda; all GPUs.
        let all = try hosted.run(hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=all", "--", "/bin/sh", "-c", show], environment: restricted)
        #expect(all.status == 0, "\(all)")
        #expect(
            all.stdout == """
                nvidia-uvm nvidia0 nvidia1 nvidiactl 
                \tlibnvidia-ml.so.1 => /opt/toolbox/nvidia/lib/libnvidia-ml.so.1
                NVIDIA-SMI (fake) GPUs: nvidia0 nvidia1

                """, "\(all)")
        // void (or unset): nothing; the job's value wins over the image's.
        let void = try hosted.run(
            hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=all", "--", "/bin/sh", "-c", "ls /dev | grep -c nvidia; test -e /opt/toolbox || echo none"],
            environment: restricted.merging(["NVIDIA_VISIBLE_DEVICES": "void"]) { $1 })
        #expect(void.stdout == "0\nnone\n", "\(void)")
        let wrong = try hosted.run(hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=7", "--", "true"], environment: restricted)
        #expect(wrong.status == 78 && wrong.stderr.contains("nvidia hook: error: GPU 7 is not on this node"), "\(wrong)")
        // compute asked for, and no libcuda in the host's linker cache: an error, not a silent start.
        try hosted.configure(
            "nvidia", "NVIDIA_HOOK_LDCACHE=/etc/ld.so.cache\nNVIDIA_HOOK_DEVICE_DIR=\(devices)\nNVIDIA_HOOK_BINARY_PATH=\(hosted.host)/nvidia\n")
        let noDriver = try hosted.run(
            hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute", "--", "true"], environment: restricted)
        #expect(noDriver.status == 78, "\(noDriver)")
        #expect(noDriver.stderr.contains("nvidia hook: error: the driver's libcuda.so is not in the host's linker cache (/etc/ld.so.cache), for NVIDIA_DRIVER_CAPABILITIES compute\n  hint: install the NVIDIA driver's user-space libraries"), "\(noDriver)")
        try hosted.configure(
            "nvidia", "NVIDIA_HOOK_LDCACHE=\(hosted.host)/ld.so.cache\nNVIDIA_HOOK_DEVICE_DIR=\(devices)\nNVIDIA_HOOK_BINARY_PATH=\(hosted.host)/nvidia\n")
        // A mistyped switch is off, and said so.
        let typo = try hosted.run(hosted.glibc, ["--annotation", "com.hooks.dcgm.enabled=ture", "--", "true"])
        #expect(typo.status == 0 && typo.stderr.contains("dcgm hook: warning: com.hooks.dcgm.enabled is 'ture', neither true nor false: taken as false"), "\(typo)")

        // NVIDIA_REQUIRE_*: the fake driver is 535.104.05 with CUDA 12.2 (its cuDriverGetVersion).
        let versions = try NamespaceEnterTests.run(
            hosted.base, ["driver-versions", "--ldcache", hosted.host + "/ld.so.cache"], tool: "toolbox-hook")
        #expect(versions.status == 0 && versions.stdout == "driver 535.104.05\ncuda 12.2\n", "\(versions)")
        func require(_ expression: String, _ extra: [String: String] = [:]) throws -> ToolResult {
            try hosted.run(
                hosted.glibc, ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_REQUIRE_CUDA=" + expression, "--", "true"],
                environment: restricted.merging(extra) { $1 })
        }
        let newer = try require("cuda>=12.4 brand=tesla,driver>=470,driver<471")
        #expect(newer.status == 78, "\(newer)")
        #expect(newer.stderr.contains("nvidia hook: error: the image requires cuda>=12.4 brand=tesla,driver>=470,driver<471 (NVIDIA_REQUIRE_CUDA); this node's driver 535.104.05 supports CUDA 12.2\n  hint: use an image made for CUDA 12.2 or older, run on nodes with a newer driver, or set NVIDIA_DISABLE_REQUIRE=1 to start anyway"), "\(newer)")
        #expect(try require("cuda>=12.0").status == 0)
        // The second alternative holds: a 535 datacenter driver (brand is taken as met).
        #expect(try require("cuda>=12.4 brand=tesla,driver>=535,driver<536").status == 0)
        #expect(try require("cuda>=12.4", ["NVIDIA_DISABLE_REQUIRE": "1"]).status == 0)
        let garbled = try require("cuda~12")
        #expect(garbled.status == 78 && garbled.stderr.contains("nvidia hook: error: NVIDIA_REQUIRE constraint 'cuda~12' does not parse"), "\(garbled)")
        // A version that is not one (it was a bash error, and the container started).
        let notAVersion = try require("cuda>12.x")
        #expect(
            notAVersion.status == 78 && notAVersion.stderr.contains("nvidia hook: error: NVIDIA_REQUIRE constraint 'cuda>12.x' does not parse: 12.x is not a version\n"),
            "\(notAVersion)")
        let noCache = try NamespaceEnterTests.run(hosted.base, ["driver-versions", "--ldcache", "/nonexistent/ld.so.cache"], tool: "toolbox-hook")
        #expect(noCache.status == 66 && noCache.stderr == "toolbox-hook: error: /nonexistent/ld.so.cache: cannot read the host's linker cache\n", "\(noCache)")

        // MPS: its control daemon runs inside the container (it reads the image's file), the job
        // sees its directories, and it is stopped with the container.
        let mps = try hosted.run(
            hosted.glibc,
            [
                "--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "--annotation",
                "com.hooks.nvidia_cuda_mps.enabled=true", "--", "/bin/sh", "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10; do test -e $CUDA_MPS_PIPE_DIRECTORY/started && break; sleep 0.2; done; echo $CUDA_MPS_PIPE_DIRECTORY; cat $CUDA_MPS_PIPE_DIRECTORY/started",
            ], environment: restricted)
        #expect(mps.status == 0 && mps.stdout == "/var/run/nvidia-mps\nhello from the image\n", "\(mps)")
        #expect(Self.waitForNoProcess(named: "sleep", uid: hosted.base.uid), "the MPS daemon outlived its container")
        // A daemon that is gone at once (here a shell that reads nothing): the start fails, said so.
        try hosted.configure("nvidia-cuda-mps", "MPS_HOOK_CONTROL=/bin/sh\n")
        let gone = try hosted.run(
            hosted.glibc,
            ["--env", "NVIDIA_VISIBLE_DEVICES=0", "--env", "NVIDIA_DRIVER_CAPABILITIES=compute,utility", "--annotation", "com.hooks.nvidia_cuda_mps.enabled=true", "--", "true"],
            environment: restricted)
        #expect(gone.status == 78, "\(gone)")
        #expect(gone.stderr.contains("toolbox-hook: error: /bin/sh -f exited right after it started (no output in /var/log/nvidia-mps/control.out)"), "\(gone)")
        #expect(gone.stderr.contains("nvidia-cuda-mps hook: error: cannot start /bin/sh inside the container"), "\(gone)")
        #expect(NamespaceEnterTests.waitForNoLeftovers(hosted.base).isEmpty)
    }

    @Test func sshHookAcceptsOnlyTheAuthorisedKeyAndStopsWithTheContainer() throws {
        guard let hosted = try Self.setUp() else { return }
        let box = hosted.box
        try box.mkdir("ssh")
        try box.mkdir("control")
        for name in ["good", "other"] {
            let made = try Tools.run(absolute: "/usr/bin/dropbearkey", ["-t", "ed25519", "-f", box.path + "/ssh/" + name], in: box.url)
            try #require(made.status == 0, "\(made)")
            let line = made.stdout.split(separator: "\n").first { $0.hasPrefix("ssh-ed25519 ") }
            try box.write("ssh/\(name).pub", String(try #require(line)) + "\n")
        }
        // An authorized_keys file as users have them: a comment, options before the key, indented.
        let goodKey = try String(contentsOfFile: box.path + "/ssh/good.pub", encoding: .utf8)
        try box.write("ssh/good.pub", "# my laptop\n\n  no-X11-forwarding,no-agent-forwarding " + goodKey)
        // A hook after the SSH hook adds a variable: logins see it too.
        try box.write("late/hooks.d/zz-late.sh", "#!/bin/sh\necho 'LATE=from a later hook' >> \"$ENROOT_ENVIRON\"\n")
        chmod(box.path + "/late/hooks.d/zz-late.sh", 0o755)
        chmod(box.path + "/ssh/good.pub", 0o644)
        chown(box.path + "/control", uid_t(hosted.base.uid), gid_t(hosted.base.gid))
        let port = 20000 + Int.random(in: 0..<12000)  // below the ephemeral range (32768 on)
        // The job waits until the test says stop; on the musl image and on the glibc one (whose
        // own loader must not run Dropbear: it brings its libraries and the host's loader).
        for (label, image) in [("musl", hosted.musl), ("glibc", hosted.glibc)] {
            try? FileManager.default.removeItem(atPath: box.path + "/control/stop")
            try? FileManager.default.removeItem(atPath: box.path + "/control/started")
            let job = Process()
            job.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            job.arguments = [
                "--reuid=\(hosted.base.uid)", "--regid=\(hosted.base.gid)", "--clear-groups", Tools.path("ns-enter"), "--image", image.image,
                "--mount", box.path + "/control:/control", "--env", "GREETING=it's here", "--annotation", "com.hooks.ssh.enabled=true",
                "--annotation", "com.hooks.ssh.port=\(port)", "--annotation", "com.hooks.ssh.authorize_ssh_key=\(box.path)/ssh/good.pub", "--",
                "/bin/sh", "-c", "touch /control/started; while [ ! -e /control/stop ]; do sleep 0.1; done",
            ]
            job.environment = [
                "PATH": "/usr/bin:/bin", "HOME": "/home/tbxtest", "TOOLBOX_SYSCONF_PATH": hosted.sysconf, "ENROOT_SLURM_HOOK": "0",
                "ENROOT_CONFIG_PATH": box.path + "/late",
            ]
            let errors = box.url.appendingPathComponent("job-\(label).err")
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            job.standardError = try FileHandle(forWritingTo: errors)
            job.standardOutput = FileHandle.nullDevice
            try job.run()
            defer {
                _ = FileManager.default.createFile(atPath: box.path + "/control/stop", contents: nil)
                job.waitUntilExit()
            }
            let login = { (key: String) throws -> ToolResult in
                try Tools.run(
                    absolute: "/usr/bin/timeout",
                    [
                        "20", "/usr/bin/dbclient", "-y", "-y", "-i", box.path + "/ssh/" + key, "-p", String(port), "tbxtest@127.0.0.1",
                        "cat /data/hello.txt; id -u; . /etc/profile.d/zz-toolbox-ssh.sh; echo \"$GREETING|$LATE\"",
                    ], in: box.url)
            }
            // Logins once the container's command runs (the hooks after the SSH hook are done).
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: box.path + "/control/started") { usleep(50_000) }
            var accepted = try login("good")
            for _ in 0..<50 where accepted.status != 0 {
                usleep(100_000)
                accepted = try login("good")
            }
            let log = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            #expect(accepted.status == 0, "\(label): \(accepted)\n--- ns-enter\n\(log)")
            #expect(accepted.stdout == "hello from the image\n\(hosted.base.uid)\nit's here|from a later hook\n", "\(label): \(accepted)")
            #expect(log.contains("ssh hook: SSH server on port \(port)"), "\(label): \(log)")
            // A second login: Dropbear serves each connection in a process of its own.
            let again = try login("good")
            #expect(again.status == 0, "\(label): \(again)")
            let refused = try login("other")
            #expect(refused.status != 0 && refused.stderr.contains("No auth methods could be used"), "\(label): \(refused)")

            _ = FileManager.default.createFile(atPath: box.path + "/control/stop", contents: nil)
            job.waitUntilExit()
            #expect(job.terminationStatus == 0, "\(label): \(log)")
            #expect(Self.waitForNoProcess(named: "ld-linux-x86-64", uid: hosted.base.uid), "Dropbear outlived its container (\(label))")
            let after = try login("good")
            #expect(after.status != 0, "\(label): \(after)")
        }

        // The port taken by another program: said so before anything starts.
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        listener.arguments = ["-c", "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', \(port)))\ns.listen()\nprint('ready', flush=True)\ntime.sleep(60)"]
        let ready = Pipe()
        listener.standardOutput = ready
        try listener.run()
        _ = ready.fileHandleForReading.availableData
        let taken = try hosted.run(
            hosted.musl,
            [
                "--annotation", "com.hooks.ssh.enabled=true", "--annotation", "com.hooks.ssh.port=\(port)", "--annotation",
                "com.hooks.ssh.authorize_ssh_key=\(box.path)/ssh/good.pub", "--", "true",
            ])
        kill(listener.processIdentifier, SIGKILL)  // the test runner's children inherit its blocked SIGTERM
        listener.waitUntilExit()
        #expect(
            taken.status == 78
                && taken.stderr.contains(
                    "ssh hook: error: port \(port) is in use on this node (another container's SSH server, or another program)\n  hint: choose another com.hooks.ssh.port (one per job on a node)\n"),
            "\(taken)")

        // A hook after the SSH hook fails: the start fails and Dropbear is stopped at once.
        try box.write(
            "user/hooks.d/zz-fail.sh", "#!/bin/sh\nsleep 0.3\nkill -0 $(cat \"$TOOLBOX_HOOK_PIDS\") && echo 'the service runs' >&2\necho 'no luck' >&2\nexit 4\n")
        chmod(box.path + "/user/hooks.d/zz-fail.sh", 0o755)
        let failed = try hosted.run(
            hosted.musl,
            [
                "--annotation", "com.hooks.ssh.enabled=true", "--annotation", "com.hooks.ssh.port=\(port)", "--annotation",
                "com.hooks.ssh.authorize_ssh_key=\(box.path)/ssh/good.pub", "--", "true",
            ], environment: ["ENROOT_CONFIG_PATH": box.path + "/user"])
        #expect(failed.status == 78 && failed.stderr.hasSuffix("the service runs\nno luck\nns-enter: error: hook \(box.path)/user/hooks.d/zz-fail.sh exited with status 4\n  hint: its messages are above\n"), "\(failed)")
        #expect(Self.waitForNoProcess(named: "ld-linux-x86-64", uid: hosted.base.uid), "Dropbear outlived a failed start")

        // The home inside the container a mount from the host without ~/.ssh/authorized_keys:
        // a clear error, and the host's home untouched.
        try box.mkdir("hosthome")
        chown(box.path + "/hosthome", uid_t(hosted.base.uid), gid_t(hosted.base.gid))
        let homeMounted = try hosted.run(
            hosted.musl,
            [
                "--mount", box.path + "/hosthome", "--annotation", "com.hooks.ssh.enabled=true", "--annotation", "com.hooks.ssh.port=\(port)",
                "--annotation", "com.hooks.ssh.authorize_ssh_key=\(box.path)/ssh/good.pub", "--", "true",
            ], environment: ["HOME": box.path + "/hosthome"])
        #expect(homeMounted.status == 78, "\(homeMounted)")
        #expect(
            homeMounted.stderr.contains(
                "ssh hook: error: cannot put the key at \(box.path)/hosthome/.ssh/authorized_keys in the container: \(box.path)/hosthome there is a mount from the host without that file\n  hint: put the public key into \(box.path)/hosthome/.ssh/authorized_keys on the host (mode 600), or do not mount \(box.path)/hosthome into the container\n"),
            "\(homeMounted)")
        #expect(!FileManager.default.fileExists(atPath: box.path + "/hosthome/.ssh"))
        #expect(NamespaceEnterTests.waitForNoLeftovers(hosted.base).isEmpty)
    }

    @Test func slurmHookIsOnByDefaultAndOffWithENROOT_SLURM_HOOK() throws {
        guard let hosted = try Self.setUp() else { return }
        let box = hosted.box
        try box.write("slurm/bin/srun", "#!/bin/sh\necho \"srun in the container: $(cat \(box.path)/slurm/etc/slurm.conf)\"\n")
        chmod(box.path + "/slurm/bin/srun", 0o755)
        try box.write("slurm/etc/slurm.conf", "ClusterName=fake\n")
        try hosted.configure("slurm", "SLURM_HOOK_PATHS=\(box.path)/slurm/etc\nSLURM_HOOK_LDCACHE=\(hosted.host)/ld.so.cache\n")
        let path = ["PATH": box.path + "/slurm/bin:/usr/bin:/bin"]
        let on = try hosted.run(hosted.glibc, ["--", box.path + "/slurm/bin/srun"], environment: path.merging(["ENROOT_SLURM_HOOK": ""]) { $1 })
        #expect(on.status == 0 && on.stdout == "srun in the container: ClusterName=fake\n", "\(on)")
        // Off from the EDF's [env] (here --env), as on Alps.
        let off = try hosted.run(
            hosted.glibc, ["--env", "ENROOT_SLURM_HOOK=0", "--", "/bin/sh", "-c", "test -e \(box.path)/slurm || echo absent"],
            environment: path.merging(["ENROOT_SLURM_HOOK": ""]) { $1 })
        #expect(off.status == 0 && off.stdout == "absent\n", "\(off)")
    }

    /// The Slurm hook with the real Slurm (a single-node cluster): its commands work inside the
    /// container, talk to slurmctld through the host's configuration and munge socket, and start
    /// a job step.
    @Test func slurmCommandsWorkInsideTheContainerWithTheRealSlurm() throws {
        guard let hosted = try Self.setUp(), let slurm = try LocalSlurm.start() else { return }
        try hosted.configure("slurm", "SLURM_HOOK_PATHS='\(slurm.directory.path) /usr/lib/x86_64-linux-gnu/slurm-wlm'\n")
        let environment = ["ENROOT_SLURM_HOOK": "", "SLURM_CONF": slurm.configuration, "PATH": "/usr/bin:/bin"]
        let ping = try hosted.run(hosted.glibc, ["--", "/usr/bin/scontrol", "ping"], environment: environment)
        #expect(ping.status == 0 && ping.stdout.hasPrefix("Slurmctld(primary) at ") && ping.stdout.hasSuffix(" is UP\n"), "\(ping)")
        let step = try hosted.run(hosted.glibc, ["--", "/usr/bin/srun", "-n", "1", "echo", "a step started inside"], environment: environment)
        #expect(step.status == 0 && step.stdout == "a step started inside\n", "\(step)")
        // The toolbox's wrappers first on PATH (as a site sets it): Slurm's own srun goes in.
        let wrappers = Self.repository.appendingPathComponent("bin").path
        let shadowed = try hosted.run(
            hosted.glibc, ["--", "/bin/sh", "-c", "test -e \(wrappers)/srun || echo no-wrapper; /usr/bin/srun -n 1 echo real srun"],
            environment: environment.merging(["PATH": wrappers + ":/usr/bin:/bin"]) { $1 })
        #expect(shadowed.status == 0 && shadowed.stdout == "no-wrapper\nreal srun\n", "\(shadowed)")
        // Off: no Slurm inside.
        let off = try hosted.run(
            hosted.glibc, ["--", "/bin/sh", "-c", "test -e /usr/bin/scontrol || echo absent"],
            environment: environment.merging(["ENROOT_SLURM_HOOK": "0"]) { $1 })
        #expect(off.stdout == "absent\n", "\(off)")
    }

    /// toolbox-hook's own errors, each with its exact message and status (no namespace needed).
    @Test func toolboxHookBadInput() throws {
        let box = try Sandbox()
        try box.mkdir("root/etc")
        let root = box.path + "/root"
        let garbage = try box.write("garbage.cache", "glibc-ld.so.cache1.1" + String(repeating: "\u{7f}", count: 80))
        // Fifos where files are expected: refused, never waited on.
        let fifo = box.path + "/fifo"
        mkfifo(fifo, 0o644)
        mkfifo(root + "/etc/log.fifo", 0o644)
        let cases: [([String], [String: String], Int32, String)] = [
            (["inject", "--name", "x", "--root", root, fifo], [:], 65, "toolbox-hook: error: the library \(fifo) is not a regular file\n"),
            (["inject", "--name", "x", "--root", root, "/etc/passwd"], [:], 65,
             "toolbox-hook: error: the library /etc/passwd is not an ELF shared library\n  hint: inject takes shared libraries; bind-mount other files with a line in $ENROOT_MOUNTS\n"),
            (["inject", "--name", "x", "--root", root, "--needed-by", "/etc"], [:], 65,
             "toolbox-hook: error: --needed-by /etc: not a file\n  hint: name a host program or library whose libraries the container needs\n"),
            (["inject", "--name", "x", "--root", root, "--ldcache", fifo, "libfoo.so"], [:], 66,
             "toolbox-hook: error: \(fifo): cannot read the host's linker cache\n"),
            (["driver-versions", "--ldcache", fifo], [:], 66, "toolbox-hook: error: \(fifo): cannot read the host's linker cache\n"),
            (["service", "--root", root, "--log", "/etc/log.fifo", "--", "/bin/true"], [:], 65,
             "toolbox-hook: error: --log /etc/log.fifo: not a regular file in the container\n"),
            (["service", "--root", root, "--log", "/nowhere/x.log", "--", "/bin/true"], [:], 65,
             "toolbox-hook: error: --log /nowhere/x.log: no directory /nowhere in the container\n"),
            (["inject", "--name", "../x", "--root", root, "libfoo.so"], [:], 64,
             "toolbox-hook: error: --name: use letters, digits, '.', '_' and '-' (not starting with '.')\n"),
            (["inject", "--name", "x", "libfoo.so"], [:], 65,
             "toolbox-hook: error: no root file system\n  hint: give --root, or run this from a hook (ENROOT_ROOTFS)\n"),
            (["inject", "--name", "x", "--root", root, "/nonexistent/libfoo.so.1"], [:], 66,
             "toolbox-hook: error: the library /nonexistent/libfoo.so.1 does not exist on this host\n  hint: check the hook's configuration\n"),
            (["inject", "--name", "x", "--root", root, "--ldcache", garbage, "libfoo.so"], [:], 66,
             "toolbox-hook: error: \(garbage): cannot read the host's linker cache\n  hint: run ldconfig on the host, or name the libraries by their paths\n"),
            (["inject", "--name", "x", "--root", root, "--ldcache", "/nonexistent", "libfoo.so"], [:], 66,
             "toolbox-hook: error: /nonexistent: cannot read the host's linker cache\n  hint: run ldconfig on the host, or name the libraries by their paths\n"),
            (["inject", "--name", "x", "--root", root, "--needed-by", "/nonexistent/prog"], [:], 66,
             "toolbox-hook: error: --needed-by /nonexistent/prog: no such file on this host\n"),
            (["inject", "--name", "x", "--root", box.path + "/nowhere", "libfoo.so"], [:], 66,
             "toolbox-hook: error: root file system \(box.path)/nowhere is not a directory\n"),
            (["service", "--root", root], [:], 64, "toolbox-hook: error: give the program after --\n"),
            (["service", "--root", root, "--", "/nonexistent-program"], [:], 127,
             "toolbox-hook: error: cannot start /nonexistent-program in the container: No such file or directory\n"),
        ]
        for (arguments, environment, status, stderr) in cases {
            let result = try box.run("toolbox-hook", arguments, environment: environment)
            #expect(result.status == status && result.stderr.hasPrefix(stderr) && result.stdout.isEmpty, "\(arguments): \(result)")
        }
        let abi = try box.run("toolbox-hook", ["inject", "--name", "x", "--root", root, "--abi", "loose", "libfoo.so"])
        #expect(abi.status == 64 && abi.stderr.contains("loose"), "\(abi)")
    }

    /// Waits up to 5 s until the user runs no process of that name (zombies aside).
    static func waitForNoProcess(named name: String, uid: Int) -> Bool {
        for _ in 0..<100 {
            var found = false
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(entry) != nil {
                guard let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                    comm.hasPrefix(name.prefix(15)),
                    let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8)
                else { continue }
                let lines = status.split(separator: "\n")
                let zombie = lines.first { $0.hasPrefix("State:") }?.contains("Z") ?? false
                let owner = lines.first { $0.hasPrefix("Uid:") }?.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first
                if !zombie && owner.map({ Int($0) == uid }) == true { found = true }
            }
            if !found { return true }
            usleep(50_000)
        }
        return false
    }
}
