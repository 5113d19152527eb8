import Foundation
import Testing

/// img-build with a real builder (Charliecloud's ch-image, unprivileged, as the test user) on a
/// base image from a real registry on loopback; the result squashed by img-squash and entered by
/// ns-enter.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct ImageBuildTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct Fixture {
        var setup: NamespaceEnterTests.Setup
        var registry: LocalRegistry
        var environment: [String: String]
        var box: Sandbox { setup.box }

        /// A shell command as the test user, in the sandbox.
        func sh(_ script: String, extra: [String: String] = [:]) throws -> ToolResult {
            try Tools.run(
                absolute: "/usr/bin/setpriv",
                ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", "/bin/bash", "-c", script],
                environment: environment.merging(extra) { $1 }, in: box.url)
        }

        /// Writes a file the test user may read (and rewrite).
        func write(_ name: String, _ text: String) throws {
            try box.write(name, text)
            chown(box.path + "/" + name, uid_t(setup.uid), gid_t(setup.gid))
            let directory = (box.path + "/" + name as NSString).deletingLastPathComponent
            chown(directory, uid_t(setup.uid), gid_t(setup.gid))
        }
    }

    /// The PATH of the builds: the built tools, then Debian's (ch-image is a Python script that
    /// must find Debian's python3 and its lark module).
    static var path: String {
        URL(fileURLWithPath: Tools.path("img-build")).deletingLastPathComponent().path + ":/usr/bin:/bin"
    }

    static func setUp() throws -> Fixture? {
        guard let setup = try NamespaceEnterTests.setUp() else { return nil }
        for tool in ["/usr/bin/umoci", "/usr/bin/ch-image", "/usr/bin/unsquashfs"] where !FileManager.default.isExecutableFile(atPath: tool) {
            print("skipped: \(tool) is not installed (contrib/install-deps.sh installs charliecloud-builders, umoci, squashfs-tools)")
            return nil
        }
        let probe = try Tools.run(absolute: "/usr/bin/ch-image", ["--version"], environment: ["PATH": path, "USER": "root"], in: setup.box.url)
        guard probe.status == 0 else {
            print("skipped: ch-image does not run here (apt-get install python3-lark python3-requests): \(probe)")
            return nil
        }
        guard let registry = try LocalRegistry.start() else { return nil }
        let box = setup.box
        try registry.pushBusybox(as: "test/busybox", workingIn: box.path)
        for directory in ["store", "home", "edf", "proj"] {
            try box.mkdir(directory)
            chown(box.path + "/" + directory, uid_t(setup.uid), gid_t(setup.gid))
        }
        chown(box.path, uid_t(setup.uid), gid_t(setup.gid))
        let environment = [
            "PATH": path, "HOME": box.path + "/home", "EDF_PATH": box.path + "/edf", "EDF_IMAGESTORE": box.path + "/store",
            "ENROOT_ALLOW_HTTP": "yes", "CH_IMAGE_STORAGE": box.path + "/ch-storage",
        ]
        return Fixture(setup: setup, registry: registry, environment: environment)
    }

    static let pipeline = "edf-expand dev | img-pull -q | img-build | img-squash -q"

    @Test func buildsOnTheRegistryImageRunsTheResultAndReusesIt() throws {
        guard let f = try Self.setUp() else { return }
        // The EDF names the base in enroot's form, the Containerfile's FROM in Docker's.
        try f.write("edf/dev.toml", """
            image = "\(f.registry.host)#test/busybox:1"
            containerfile = "./proj/Containerfile"
            [env]
            FROM_EDF = "edf"
            """)
        try f.write("proj/tool.sh", "#!/bin/sh\necho tool from the context\n")
        chmod(f.box.path + "/proj/tool.sh", 0o755)
        try f.write("proj/Containerfile", """
            # tools on top of the vendor image
            FROM \(f.registry.host)/test/busybox:1
            RUN echo built-by-run > /built.txt && \\
                mkdir -p /opt/tools/bin
            COPY tool.sh /opt/tools/bin/tool
            ENV GREETING=hello-from-env
            ENV PATH=/opt/tools/bin:$PATH
            WORKDIR /work/dir
            """)
        let first = try f.sh(Self.pipeline + " > env.json")
        #expect(first.status == 0, "\(first)")
        // The builder's output streams to stderr.
        #expect(first.stderr.contains("RUN echo built-by-run") && first.stderr.contains("img-build: building \(f.box.path)/proj/Containerfile with ch-image"), "\(first)")
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("env.json"))) as? [String: Any]
        let build = try #require(document?["build"] as? [String: Any])
        #expect(build["reused"] as? Bool == false)
        #expect((build["base"] as? [String: Any])?["reference"] as? String == "\(f.registry.host)/test/busybox:1")
        let squash = try #require(document?["squash"] as? [String: Any])
        let squashPath = try #require(squash["path"] as? String)
        // ch-image's one tar layer (as large as the image) left the cache once squashed.
        let layer = try #require(((document?["pull"] as? [String: Any])?["layers"] as? [[String: Any]])?.first?["path"] as? String)
        #expect(!FileManager.default.fileExists(atPath: layer), "\(layer)")
        #expect(squashPath.hasPrefix(f.box.path + "/store/toolbox-build+proj+containerfile+") && squashPath.hasSuffix(".sqsh"), "\(squashPath)")
        // A real squashfs, with the file the RUN wrote.
        let listing = try shell("unsquashfs -l '\(squashPath)'")
        #expect(listing.contains("squashfs-root/built.txt") && listing.contains("squashfs-root/work/dir"), "\(listing)")

        // The file, the variables (the Containerfile's, the base image's, the EDF's) and the directory.
        // A file COPYed from the context, on a PATH that extends the base image's.
        let run = try f.sh("ns-enter --environment env.json -- sh -c 'cat /built.txt; echo $GREETING $FROM_IMAGE $FROM_EDF; pwd; cat /data/image.txt; echo $PATH; tool'")
        #expect(run.status == 0 && run.stdout == "built-by-run\nhello-from-env yes edf\n/work/dir\nfrom the image\n/opt/tools/bin:/bin\ntool from the context\n", "\(run)")

        // Unchanged: nothing is built, the squashfs is reused.
        let second = try f.sh(Self.pipeline + " > env2.json")
        #expect(second.status == 0, "\(second)")
        #expect(second.stderr.contains("img-build: using the image built before from \(f.box.path)/proj/Containerfile"), "\(second)")
        #expect(!second.stderr.contains("RUN echo built-by-run") && !second.stderr.contains("img-build: building"), "\(second)")
        let again = try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("env2.json"))) as? [String: Any]
        #expect((again?["build"] as? [String: Any])?["reused"] as? Bool == true)
        #expect((again?["squash"] as? [String: Any])?["reused"] as? Bool == true)
        #expect((again?["squash"] as? [String: Any])?["path"] as? String == squashPath)

        // A copy of the project (same key): the build is reused and the document names this
        // copy's files; the image is the one squashed for the first (its layer left the cache
        // once squashed into the store).
        let copied = try f.sh("cp -a proj copy && sed 's|./proj/|./copy/|' edf/dev.toml > edf/copy.toml && edf-expand copy | img-pull -q | img-build | img-squash -q > envc.json")
        #expect(copied.status == 0 && copied.stderr.contains("img-build: using the image built before from \(f.box.path)/copy/Containerfile"), "\(copied)")
        let copy = try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("envc.json"))) as? [String: Any]
        #expect((copy?["build"] as? [String: Any])?["containerfile"] as? String == f.box.path + "/copy/Containerfile", "\(String(describing: copy?["build"]))")
        #expect((copy?["build"] as? [String: Any])?["context"] as? String == f.box.path + "/copy")
        #expect((copy?["squash"] as? [String: Any])?["path"] as? String == squashPath, "\(String(describing: copy?["squash"]))")

        // A built document put through the stages again: img-pull drops the build and the image
        // made from the other pull, img-build and img-squash reuse theirs (the built image runs,
        // not the base that img-pull fetched).
        let through = try f.sh("img-pull -q --allow-http < env2.json | img-build -q | img-squash -q > env4.json")
        #expect(through.status == 0, "\(through)")
        let rerun = try f.sh("ns-enter --environment env4.json -- cat /built.txt")
        #expect(rerun.status == 0 && rerun.stdout == "built-by-run\n", "\(rerun)")

        // A new file in the context is a new key: built again.
        try f.write("proj/notes.txt", "changed context\n")
        let third = try f.sh(Self.pipeline + " > env3.json")
        #expect(third.status == 0 && third.stderr.contains("img-build: building"), "\(third)")
        let rebuilt = try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("env3.json"))) as? [String: Any]
        #expect((rebuilt?["squash"] as? [String: Any])?["path"] as? String != squashPath)

        // The srun wrapper runs the same stages (local mode: no Slurm); the build is reused.
        let wrapped = try f.sh(
            "\(Self.repository.path)/bin/srun --environment=dev sh -c 'cat /built.txt; pwd'", extra: ["SRUN_REAL": "none"])
        #expect(wrapped.status == 0 && wrapped.stdout == "built-by-run\n/work/dir\n", "\(wrapped)")
        let dry = try f.sh("\(Self.repository.path)/bin/srun --dry-run --environment=dev true", extra: ["SRUN_REAL": "none"])
        #expect(dry.stdout.contains(" | \(Tools.path("img-build")) -q | \(Tools.path("img-squash")) -q > environment.json"), "\(dry)")
    }

    /// img-build killed outright while its builder runs: a second img-build right after still
    /// builds the image (the builder keeps the build lock, so the second waits for it instead of
    /// clearing its workspace; here ch-image's own storage lock also serialises the two, so this
    /// does not tell the two apart).
    @Test func aBuildAfterAKilledOneStillBuilds() throws {
        guard let f = try Self.setUp() else { return }
        try f.write("edf/slow.toml", "image = \"\(f.registry.host)#test/busybox:1\"\ncontainerfile = \"./slow/Containerfile\"\n")
        try f.write("slow/Containerfile", "FROM \(f.registry.host)/test/busybox:1\nRUN sleep 8 && echo slow > /slow.txt\n")
        let pulled = try f.sh("edf-expand slow | img-pull -q > pulled.json")
        #expect(pulled.status == 0, "\(pulled)")
        /// img-build in the background as the test user, its stderr into `errors`.
        func startBuild(errors: String) throws -> Process {
            let build = Process()
            build.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            build.arguments = [
                "--reuid=\(f.setup.uid)", "--regid=\(f.setup.gid)", "--clear-groups", "/bin/bash", "-c",
                "cd \(f.box.path) && exec img-build -q < pulled.json > /dev/null 2> \(errors)",
            ]
            build.environment = f.environment
            try build.run()
            return build
        }
        /// Whether the builder's RUN (`sleep SECONDS`) runs.
        func sleeping(_ seconds: String) -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).contains { name in
                guard Int(name) != nil, let line = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(name)/cmdline")) else { return false }
                return line.starts(with: Data("sleep\u{0}\(seconds)\u{0}".utf8))
            }
        }
        func waitUntilSleeping(_ seconds: String) -> Bool {
            for _ in 0..<200 {
                if sleeping(seconds) { return true }
                usleep(50_000)
            }
            return false
        }
        let first = try startBuild(errors: "/dev/null")
        // The builder is at work (its RUN sleeps): kill img-build itself.
        #expect(waitUntilSleeping("8"), "the builder's RUN did not start")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let second = try f.sh("img-build -q < pulled.json > built.json")
        #expect(second.status == 0, "\(second)")
        let run = try f.sh("img-squash -q < built.json > ready.json && ns-enter --environment ready.json -- cat /slow.txt")
        #expect(run.status == 0 && run.stdout == "slow\n", "\(run)")

        // SIGTERM to img-build alone: the builder and its RUN stop with it (they ran on, orphaned).
        try f.write("slow/Containerfile", "FROM \(f.registry.host)/test/busybox:1\nRUN sleep 37 && echo slow > /slow.txt\n")
        let stopped = try startBuild(errors: "stopped.err")
        #expect(waitUntilSleeping("37"), "the builder's RUN did not start")
        kill(stopped.processIdentifier, SIGTERM)
        stopped.waitUntilExit()
        #expect(stopped.terminationStatus == 143)
        var gone = false
        for _ in 0..<100 where !gone {
            usleep(50_000)
            gone = !sleeping("37")
        }
        #expect(gone, "the builder's RUN outlived img-build")
        let said = (try? String(contentsOfFile: f.box.path + "/stopped.err", encoding: .utf8)) ?? ""
        #expect(said.contains("img-build: error: \(f.box.path)/slow/Containerfile: the build was stopped: ch-image was killed by signal 15 (Terminated)\n"), "\(said)")
    }

    @Test func baseImageAsABuildArgumentAndAFailingRun() throws {
        guard let f = try Self.setUp() else { return }
        try f.write("edf/dev.toml", """
            image = "\(f.registry.host)/test/busybox:1"
            containerfile = "./proj/Containerfile"
            """)
        // ENTRYPOINT and CMD are applied by img-build (ch-image ignores them).
        try f.write("proj/Containerfile", """
            ARG BASE_IMAGE
            FROM $BASE_IMAGE
            RUN echo second > /second.txt
            ENTRYPOINT ["/bin/echo", "entry"]
            CMD ["point"]
            """)
        let built = try f.sh(Self.pipeline + " > env.json")
        #expect(built.status == 0, "\(built)")
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("env.json"))) as? [String: Any]
        let config = try #require(((document?["squash"] as? [String: Any])?["config"]) as? [String: Any])
        #expect(config["Entrypoint"] as? [String] == ["/bin/echo", "entry"] && config["Cmd"] as? [String] == ["point"], "\(config)")
        let run = try f.sh("ns-enter --environment env.json -- cat /second.txt")
        #expect(run.status == 0 && run.stdout == "second\n", "\(run)")

        // Options for the builder are part of the key: given, the image is built again.
        let optioned = try f.sh("edf-expand dev | img-pull -q | img-build --builder-arg --no-force-detect > /dev/null")
        #expect(optioned.status == 0 && optioned.stderr.contains("img-build: building"), "\(optioned)")
        let fromVariable = try f.sh("edf-expand dev | img-pull -q | img-build > /dev/null", extra: ["TOOLBOX_BUILDER_ARGS": "--no-force-detect"])
        #expect(fromVariable.status == 0 && fromVariable.stderr.contains("img-build: using the image built before"), "\(fromVariable)")

        // A failing RUN: the builder's message and status; nothing recorded, nothing squashed.
        try f.write("proj/Containerfile", """
            ARG BASE_IMAGE
            FROM $BASE_IMAGE
            RUN echo about-to-fail >&2; exit 3
            """)
        let failed = try f.sh("set -o pipefail; edf-expand dev | img-pull -q | img-build > /dev/null")
        #expect(failed.status == 1, "\(failed)")
        #expect(failed.stderr.contains("about-to-fail") && failed.stderr.contains("RUN command exited with 3"), "\(failed)")
        #expect(failed.stderr.contains("img-build: error: \(f.box.path)/proj/Containerfile: the build failed (ch-image exit status 1)\n  hint: the builder's message is above\n"), "\(failed)")
        let workDirectories = try FileManager.default.contentsOfDirectory(atPath: f.box.path + "/home/.cache/toolbox/tmp").filter { $0.hasPrefix("build-") }
        #expect(workDirectories.isEmpty, "a failed build leaves no work directory: \(workDirectories)")
        let wrapped = try f.sh("\(Self.repository.path)/bin/srun --environment=dev true", extra: ["SRUN_REAL": "none"])
        #expect(wrapped.status == 1 && wrapped.stderr.contains("toolbox-srun: error: the img-build stage failed (exit status 1); the step was not started"), "\(wrapped)")
        let store = try FileManager.default.contentsOfDirectory(atPath: f.box.path + "/store").filter { $0.hasPrefix("toolbox-build+") && $0.hasSuffix(".sqsh") }
        #expect(store.count == 1, "only the first build's image: \(store)")
        let builderImages = (try? FileManager.default.contentsOfDirectory(atPath: f.box.path + "/ch-storage/img")) ?? []
        #expect(!builderImages.contains { $0.hasPrefix("toolbox-build") }, "a failed build leaves no image in ch-image's storage: \(builderImages)")

        // A context file the user cannot read: the builder could not send it either.
        try f.box.write("proj/secret", "not for you\n")
        chmod(f.box.path + "/proj/secret", 0)
        let unreadable = try f.sh("edf-expand dev | img-pull -q | img-build -q > /dev/null")
        #expect(unreadable.status == 66 && unreadable.stderr == "img-build: error: \(f.box.path)/proj/secret: cannot read a file of the build context: Permission denied\n  hint: make it readable, or move it out of the Containerfile's directory\n", "\(unreadable)")
    }

    /// Each base is built on for real: ch-image's own build cache, which takes every imported
    /// base for the same FROM, is not used; LABELs reach the image config; a cache and image
    /// store inside the build context do not change the next build's key.
    @Test func anotherBaseIsReallyBuiltOn() throws {
        guard let f = try Self.setUp() else { return }
        for name in ["a", "b"] {
            let root = f.box.path + "/base-\(name)"
            try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: root + "/bin/busybox")
            for applet in ["sh", "cat", "echo"] { try FileManager.default.createSymbolicLink(atPath: root + "/bin/" + applet, withDestinationPath: "busybox") }
            try "base \(name)\n".write(toFile: root + "/etc/whoami", atomically: true, encoding: .utf8)
            if name == "a" {
                // A device node (as a layer with /dev/null gives): the unprivileged unpack leaves it out.
                try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
                #expect(mknod(root + "/dev/null", S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0)
            }
            _ = try shell("mksquashfs '\(root)' '\(f.box.path)/base-\(name).sqsh' -quiet -noappend -all-root && chmod 644 '\(f.box.path)/base-\(name).sqsh'")
        }
        try f.write("proj/Containerfile", """
            ARG BASE_IMAGE
            FROM $BASE_IMAGE
            RUN cat /etc/whoami > /out
            LABEL org.example.team="hpc tools" version=2
            """)
        for name in ["a", "b"] {
            try f.write("edf/dev.toml", """
                image = "\(f.box.path)/base-\(name).sqsh"
                containerfile = "./proj/Containerfile"
                """)
            let built = try f.sh(Self.pipeline + " > env-\(name).json", extra: ["TOOLBOX_CACHE": f.box.path + "/proj/cache"])
            #expect(built.status == 0, "\(built)")
            #expect(built.stderr.contains("img-build: leaving out 1 device node of the base image (dev/null): they need root") == (name == "a"), "\(built)")
            let out = try f.sh("ns-enter --environment env-\(name).json -- cat /out")
            #expect(out.stdout == "base \(name)\n", "built on base \(name): \(out)\n\(built)")
            let document = try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("env-\(name).json"))) as? [String: Any]
            let config = ((document?["squash"] as? [String: Any])?["config"]) as? [String: Any]
            #expect(config?["Labels"] as? [String: String] == ["org.example.team": "hpc tools", "version": "2"], "\(String(describing: config))")
        }
        // The cache lies in the context (proj/cache): the same build again is reused.
        let again = try f.sh(Self.pipeline + " > /dev/null", extra: ["TOOLBOX_CACHE": f.box.path + "/proj/cache"])
        #expect(again.status == 0 && again.stderr.contains("img-build: using the image built before"), "\(again)")
        // A config file that appears beside the base (its variables go into the builder's base):
        // another base, built again.
        let metadata = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: f.box.url.appendingPathComponent("env-b.json"))) as? [String: Any])
        let squashMetadata = try #require((metadata["squash"] as? [String: Any])?["metadata"] as? String)
        let configured = try f.sh("cp '\(squashMetadata)' base-b.sqsh.json && " + Self.pipeline + " > /dev/null", extra: ["TOOLBOX_CACHE": f.box.path + "/proj/cache"])
        #expect(configured.status == 0 && configured.stderr.contains("img-build: building"), "\(configured)")
    }

    /// A cache without room: a clear error, status 74, nothing left in the cache.
    @Test func aFullCacheLeavesNothingBehind() throws {
        guard let f = try Self.setUp() else { return }
        try f.box.write("edf/dev.toml", "image = \"\(f.registry.host)/test/busybox:1\"\ncontainerfile = \"./proj/Containerfile\"\n")
        try f.box.write("proj/Containerfile", "FROM \(f.registry.host)/test/busybox:1\nRUN true\n")
        try f.box.mkdir("small")
        let mount = try Tools.run(absolute: "/usr/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", f.box.path + "/small"], in: f.box.url)
        guard mount.status == 0 else {
            print("skipped: cannot mount a tmpfs: \(mount.stderr)")
            return
        }
        defer { _ = try? Tools.run(absolute: "/usr/bin/umount", [f.box.path + "/small"], in: f.box.url) }
        let result = try Tools.run(
            absolute: "/bin/bash", ["-c", "edf-expand dev | img-pull -q | img-build -q --cache small > /dev/null"], environment: f.environment, in: f.box.url)
        #expect(result.status == 74 && result.stderr.hasPrefix("img-build: error: cannot unpack the base image: no space left on device (unsquashfs: "), "\(result)")
        #expect(result.stderr.hasSuffix("  hint: free space in the cache, or choose another with --cache or TOOLBOX_CACHE\n"), "\(result)")
        let left = try shell("cd '\(f.box.path)/small' && find . -type f ! -name '*.lock'")
        #expect(left.isEmpty, "\(left)")
    }

    /// Buildah instead of ch-image, where it runs (here as root, vfs storage, chroot isolation).
    @Test func buildahBuildsTheSameWay() throws {
        guard let f = try Self.setUp() else { return }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/buildah") else {
            print("skipped: buildah is not installed")
            return
        }
        try f.box.write("storage.conf", """
            [storage]
            driver = "vfs"
            graphroot = "\(f.box.path)/buildah/root"
            runroot = "\(f.box.path)/buildah/run"
            """)
        let environment = f.environment.merging(["CONTAINERS_STORAGE_CONF": f.box.path + "/storage.conf", "BUILDAH_ISOLATION": "chroot"]) { $1 }
        let info = try Tools.run(absolute: "/usr/bin/buildah", ["info"], environment: environment, in: f.box.url)
        guard info.status == 0 else {
            print("skipped: buildah does not run here: \(info)")
            return
        }
        try f.box.write("edf/dev.toml", """
            image = "\(f.registry.host)/test/busybox:1"
            containerfile = "./proj/Containerfile"
            """)
        try f.box.write("proj/Containerfile", """
            FROM \(f.registry.host)/test/busybox:1
            RUN echo by-buildah > /built.txt
            ENV GREETING=buildah-env
            WORKDIR /work/dir
            """)
        let built = try Tools.run(
            absolute: "/bin/bash", ["-c", "edf-expand dev | img-pull -q | img-build --builder buildah | img-squash -q > env.json"],
            environment: environment, in: f.box.url)
        #expect(built.status == 0 && built.stderr.contains("img-build: building \(f.box.path)/proj/Containerfile with buildah"), "\(built)")
        chown(f.box.path + "/env.json", uid_t(f.setup.uid), gid_t(f.setup.gid))
        let run = try f.sh("ns-enter --environment env.json -- sh -c 'cat /built.txt; echo $GREETING $FROM_IMAGE; pwd'")
        #expect(run.status == 0 && run.stdout == "by-buildah\nbuildah-env yes\n/work/dir\n", "\(run)")
        let second = try Tools.run(
            absolute: "/bin/bash", ["-c", "edf-expand dev | img-pull -q | img-build --builder buildah | img-squash -q >/dev/null"],
            environment: environment, in: f.box.url)
        #expect(second.status == 0 && second.stderr.contains("img-build: using the image built before"), "\(second)")
        // A changed Containerfile on the same base: built again, the base not imported again.
        try f.box.write("proj/Containerfile", "FROM \(f.registry.host)/test/busybox:1\nRUN echo changed > /built.txt\n")
        let changed = try Tools.run(
            absolute: "/bin/bash", ["-c", "edf-expand dev | img-pull -q | img-build --builder buildah | img-squash -q >/dev/null"],
            environment: environment, in: f.box.url)
        #expect(changed.status == 0 && changed.stderr.contains("already in buildah's storage") && changed.stderr.contains("img-build: building"), "\(changed)")
        // A squashfs file as the base (a FROM that uses it): ch-image's business, a clear error
        // for buildah.
        try f.box.write("proj/Containerfile", "ARG BASE_IMAGE\nFROM $BASE_IMAGE\nRUN true\n")
        try f.box.write("edf/file.toml", "image = \"\(f.setup.image)\"\ncontainerfile = \"./proj/Containerfile\"\n")
        let fromFile = try Tools.run(
            absolute: "/bin/bash", ["-c", "edf-expand file | img-pull -q | img-build -q --builder buildah >/dev/null"], environment: environment,
            in: f.box.url)
        #expect(fromFile.status == 65 && fromFile.stderr.contains("img-build: error: buildah takes the base image from a registry or an image file that img-pull imported, not a squashfs file\n  hint: build on a squashfs file with ch-image (--builder ch-image), or name the image it came from in the EDF\n"), "\(fromFile)")
    }
}

/// img-build's and the containerfile key's bad input: exact messages and statuses.
struct ImageBuildBadInputTests {
    @Test func messagesAndStatuses() throws {
        let box = try Sandbox()
        try box.write("proj/Containerfile", "FROM scratch\n")
        try box.write("missing.toml", "image = \"alpine\"\ncontainerfile = \"./nope/Containerfile\"\n")
        try box.write("typed.toml", "containerfile = 3\n")
        try box.write("good.toml", "containerfile = \"./proj/Containerfile\"\n")
        let missing = try box.run("edf-expand", ["./missing.toml"])
        #expect(missing.status == 66 && missing.stderr == "edf-expand: error: \(box.path)/missing.toml:2: key 'containerfile': Containerfile \(box.path)/nope/Containerfile does not exist\n  hint: create it, or fix the path (relative paths are taken from \(box.path))\n", "\(missing)")
        let typed = try box.run("edf-expand", ["./typed.toml"])
        #expect(typed.status == 65 && typed.stderr.hasPrefix("edf-expand: error: \(box.path)/typed.toml:1:"), "\(typed)")
        #expect(typed.stderr.contains("key 'containerfile': expected a string"), "\(typed)")
        try box.write("expanded.toml", "containerfile = \"${PROJECT}/Containerfile\"\n")
        let expanded = try box.run("edf-expand", ["./expanded.toml"], environment: ["PROJECT": box.path + "/proj"])
        #expect(expanded.status == 0 && expanded.stdout.contains("\"containerfile\" : \"\(box.path)/proj/Containerfile\""), "\(expanded)")
        let good = try box.run("edf-expand", ["./good.toml"])
        #expect(good.status == 0 && good.stdout.contains("\"containerfile\" : \"\(box.path)/proj/Containerfile\""), "\(good)")
        // edf-merge keeps it as a scalar: a child's replaces its parent's.
        try box.write("child.toml", "base_environment = \"./missing.toml\"\ncontainerfile = \"./proj/Containerfile\"\n")
        let merged = try box.run("edf-merge", ["./child.toml"])
        #expect(merged.status == 0 && merged.stdout.contains("containerfile = \"./proj/Containerfile\"") && !merged.stdout.contains("nope"), "\(merged)")

        // No builder on PATH.
        let noBuilder = try box.run("img-build", ["proj/Containerfile"], environment: ["PATH": "/nonexistent"])
        #expect(noBuilder.status == 69 && noBuilder.stderr == "img-build: error: no container builder found: none of ch-image, podman or buildah is on PATH\n  hint: install Charliecloud's unprivileged builder (Debian: apt-get install charliecloud-builders python3-lark python3-requests), or podman or buildah and choose it with --builder or TOOLBOX_BUILDER\n", "\(noBuilder)")
        let unknown = try box.run("img-build", ["proj/Containerfile"], environment: ["TOOLBOX_BUILDER": "docker"])
        #expect(unknown.status == 65 && unknown.stderr == "img-build: error: key 'TOOLBOX_BUILDER': unknown builder \"docker\"\n  hint: choose ch-image, podman or buildah (--builder or TOOLBOX_BUILDER)\n", "\(unknown)")
        let notThere = try box.run("img-build", ["--builder", "podman", "proj/Containerfile"], environment: ["PATH": "/nonexistent"])
        #expect(notThere.status == 69 && notThere.stderr.hasPrefix("img-build: error: the builder podman is not installed (not on PATH)\n"), "\(notThere)")
        let badArgument = try box.run("img-build", ["--build-arg", "NOEQUALS", "proj/Containerfile"])
        #expect(badArgument.status == 64 && badArgument.stderr.contains("--build-arg \"NOEQUALS\" is not NAME=VALUE"), "\(badArgument)")
        let relative = try box.run(
            "img-build", ["-"],
            stdin: #"{"schemaVersion":1,"image":null,"containerfile":"rel/Containerfile","entrypoint":true,"writable":true,"mounts":[],"env":{},"annotations":{}}"#)
        #expect(relative.status == 65 && relative.stderr.hasPrefix("img-build: error: <stdin>: key 'containerfile': \"rel/Containerfile\" is not an absolute path\n"), "\(relative)")
        let emptyCache = try box.run("img-build", ["--cache", "", "proj/Containerfile"])
        #expect(emptyCache.status == 64 && emptyCache.stderr.hasPrefix("img-build: error: --cache needs a directory, not an empty value\n"), "\(emptyCache)")
        let emptySquashCache = try box.run("img-pull", ["--cache", "", "ubuntu"])
        #expect(emptySquashCache.status == 64 && emptySquashCache.stderr.hasPrefix("img-pull: error: --cache needs a directory, not an empty value\n"), "\(emptySquashCache)")
        let noFile = try box.run("img-build", ["nope/Containerfile"])
        #expect(noFile.status == 66 && noFile.stderr.hasPrefix("img-build: error: \(box.path)/nope/Containerfile: the Containerfile does not exist or is not a file\n"), "\(noFile)")

        // Documents: not pulled yet, not built yet, nothing to build.
        let unpulled = #"{"schemaVersion":1,"image":{"reference":"alpine","registry":"registry-1.docker.io","repository":"library/alpine","tag":"latest"},"containerfile":"\#(box.path)/proj/Containerfile","entrypoint":false,"writable":true,"mounts":[],"env":{},"annotations":{}}"#
        let notPulled = try box.run("img-build", stdin: unpulled)
        #expect(notPulled.status == 65 && notPulled.stderr == "img-build: error: <stdin>: the environment's image has not been pulled\n  hint: pipe the document through img-pull first: edf-expand X | img-pull | img-build\n", "\(notPulled)")
        let notBuilt = try box.run("img-squash", stdin: unpulled)
        #expect(notBuilt.status == 65 && notBuilt.stderr == "img-squash: error: <stdin>: the environment's Containerfile has not been built\n  hint: pipe the document through img-build first: edf-expand X | img-pull | img-build | img-squash\n", "\(notBuilt)")
        let plain = try box.run("edf-expand", ["-"], stdin: "image = \"alpine\"\n")
        let passed = try box.run("img-build", ["-q"], stdin: plain.stdout)
        #expect(passed.status == 0 && passed.stdout == plain.stdout && passed.stderr.isEmpty, "\(passed)")
        // After a stage that failed (no output): said so, not a JSON parse error.
        for (tool, previous) in [("img-pull", "edf-expand"), ("img-build", "img-pull"), ("img-squash", "img-pull (or img-build)")] {
            let empty = try box.run(tool, stdin: "\n")
            #expect(empty.status == 65 && empty.stderr == "\(tool): error: <stdin>: no document on stdin\n  hint: pipe in what \(previous) prints; when it failed, its message is above\n", "\(empty)")
        }
        let garbage = try box.run("img-build", stdin: "not json")
        #expect(garbage.status == 65 && garbage.stderr.hasPrefix("img-build: error: <stdin>: not an environment document: "), "\(garbage)")
    }
}
