import Foundation
import SlurmCommands
import Testing

/// srun's command line as the wrapper splits it.
struct SrunCommandLineTests {
    @Test func optionsEnvironmentAndCommand() throws {
        let line = try SrunCommandLine.parse(["-n", "4", "--environment=pytorch", "-lv", "--ntasks-per-node", "2", "-N2", "--exclusive", "python", "-n", "--environment=x"])
        #expect(line.environment == "pytorch")
        #expect(line.srunOptions == ["-n", "4", "-lv", "--ntasks-per-node", "2", "-N2", "--exclusive"])
        #expect(line.command == ["python", "-n", "--environment=x"])
        #expect(line.verbose == 1 && !line.dryRun)
        let spaced = try SrunCommandLine.parse(["--environment", "./env.toml", "--dry-run", "--export=NONE", "-o", "out", "--", "-weird"])
        #expect(spaced.environment == "./env.toml" && spaced.dryRun)
        #expect(spaced.srunOptions == ["--export=NONE", "-o", "out"] && spaced.command == ["-weird"])
        // Unique prefixes of long options, as srun accepts them: passed on spelled out.
        let short = try SrunCommandLine.parse(["--part", "debug", "--environ=x", "--nodel", "n1", "--multi", "mp.conf"])
        #expect(short.srunOptions == ["--partition", "debug", "--nodelist", "n1", "--multi-prog"], "\(short)")
        #expect(short.environment == "x" && short.command == ["mp.conf"], "\(short)")
        // An ambiguous one is left to srun to refuse.
        #expect(try SrunCommandLine.parse(["--mem-per", "x"]).srunOptions == ["--mem-per"])
        let plain = try SrunCommandLine.parse(["hostname"])
        #expect(plain.environment == nil && plain.srunOptions.isEmpty && plain.command == ["hostname"])
        #expect(throws: (any Error).self) { try SrunCommandLine.parse(["-n"]) }
        #expect(throws: (any Error).self) { try SrunCommandLine.parse(["--environment"]) }
        #expect(SrunWrapper.exporting(["--export=NONE", "-n", "2", "--export", "A,B", "--export=ALL,C"])
            == ["--export=TOOLBOX_ENVIRONMENT", "-n", "2", "--export=A,B,TOOLBOX_ENVIRONMENT", "--export=ALL,C"])
        // Keywords in any case; NONE passes none of the user's variables, listed or not.
        #expect(SrunWrapper.exporting(["--export=none"]) == ["--export=TOOLBOX_ENVIRONMENT"])
        #expect(SrunWrapper.exporting(["--export=NONE,FOO"]) == ["--export=TOOLBOX_ENVIRONMENT"])
        // Without --export: what srun would take from the environment (sbatch --export=NONE sets it).
        #expect(SrunWrapper.exporting(["-n", "1"], environment: ["SLURM_EXPORT_ENV": "NONE"]) == ["-n", "1", "--export=TOOLBOX_ENVIRONMENT"])
        #expect(SrunWrapper.exporting([], environment: ["SRUN_EXPORT_ENV": "A", "SLURM_EXPORT_ENV": "NONE"]) == ["--export=A,TOOLBOX_ENVIRONMENT"])
        #expect(SrunWrapper.exporting([], environment: ["SLURM_EXPORT_ENV": "ALL"]) == [])
        #expect(SrunWrapper.exporting(["--export=ALL"], environment: ["SLURM_EXPORT_ENV": "NONE"]) == ["--export=ALL"])
        // Options whose value is optional take it only after '='.
        let optional = try SrunCommandLine.parse(["--resv-ports", "--bcast", "cat", "/data/f"])
        #expect(optional.srunOptions == ["--resv-ports", "--bcast"] && optional.command == ["cat", "/data/f"])
        #expect(throws: (any Error).self) { try SrunCommandLine.parse(["--environment", "-n", "1", "true"]) }
    }
}

/// sbatch's command line and a batch script's directives as the sbatch wrapper reads them.
struct SbatchCommandLineTests {
    @Test func optionsScriptAndArguments() throws {
        let line = try SbatchCommandLine.parse(["-N", "2", "-W", "--environment=pytorch", "-o", "out", "--export", "NONE", "job.sh", "-n", "x"])
        #expect(line.environment == "pytorch" && line.script == "job.sh" && line.scriptArguments == ["-n", "x"])
        #expect(line.sbatchOptions == ["-N", "2", "-W", "-o", "out", "--export", "NONE"])
        let wrapped = try SbatchCommandLine.parse(["--wrap", "srun --environment=x hostname", "-J", "j"])
        #expect(wrapped.wrap == "srun --environment=x hostname" && wrapped.environment == nil && wrapped.script == nil)
        #expect(wrapped.optionsWithoutWrap == ["-J", "j"])
        #expect(try SbatchCommandLine.parse(["--version"]).informational)
        #expect(throws: (any Error).self) { try SbatchCommandLine.parse(["--environment="]) }
        #expect(throws: (any Error).self) { try SbatchCommandLine.parse(["-t"]) }
    }

    @Test func directives() throws {
        let script = try BatchScript("""
            #!/bin/bash
            # a comment
            #SBATCH -N 2
            #SBATCH --environment=one
            #SBATCH --environment two -t 5 # why

            srun hostname
            #SBATCH --environment=not-a-directive
            """)
        #expect(script.interpreter == "#!/bin/bash")
        #expect(script.environment == "two")
        #expect(script.otherDirectives == ["#SBATCH -N 2", "#SBATCH -t 5 # why"])
        #expect(try BatchScript("echo no interpreter\n#SBATCH --environment=x").environment == nil)
        #expect(throws: (any Error).self) { try BatchScript("#!/bin/sh\n#SBATCH --environment\n") }
    }
}

/// The wrapper's and ns-enter's new bad input: exact messages and statuses (nothing is started).
struct SrunWrapperBadInputTests {
    @Test func messagesAndStatuses() throws {
        let box = try Sandbox()
        let cases: [(String, [String], [String: String], Int32, String)] = [
            ("ns-enter", ["--environment-variable", "NOPE", "--", "true"], [:], 66,
             "ns-enter: error: the environment variable NOPE (--environment-variable) is not set\n  hint: the srun wrapper sets it for the tasks it starts\n"),
            ("ns-enter", ["--image", "/nonexistent.sqsh", "--name", "%j.%s", "--", "true"], [:], 65,
             "ns-enter: error: --name %j.%s: SLURM_JOB_ID is not set\n  hint: %j and %s are for tasks that Slurm starts (srun)\n"),
            ("ns-enter", ["--image", "/nonexistent.sqsh", "--name", "a%x", "--", "true"], [:], 65,
             "ns-enter: error: --name a%x: %x is not %j, %s, %N or %%\n"),
            ("ns-enter", ["--image", "/nonexistent.sqsh", "--name", "%j", "--", "true"], ["SLURM_JOB_ID": "../x"], 65,
             "ns-enter: error: --name %j gives ../x, which is not a plain name\n"),
            ("ns-enter", ["--environment", "x.json", "--environment-variable", "Y", "--", "true"], [:], 64,
             "ns-enter: error: give --environment or --environment-variable, not both\n"),
            ("toolbox-srun", ["--wrap", "--", "-n", "2", "--environment"], [:], 64, "toolbox-srun: error: --environment needs a name or a path\n  hint: --environment=NAME, ./FILE.toml or /path/FILE.toml\n"),
            ("toolbox-srun", ["--wrap", "--", "-n"], [:], 64, "toolbox-srun: error: -n needs a value\n  hint: give it after the option (-n VALUE), before the command\n"),
            ("toolbox-srun", ["--wrap", "--", "--environment", "-n", "1", "true"], [:], 64,
             "toolbox-srun: error: --environment needs a name or a path\n  hint: --environment=NAME, ./FILE.toml or /path/FILE.toml\n"),
            ("toolbox-srun", ["--wrap", "--srun", "/bin/true", "--", "--environment=x", "--multi-prog", "conf"], [:], 64,
             "toolbox-srun: error: --multi-prog cannot be combined with --environment\n"),
            ("toolbox-srun", ["--wrap", "--srun", "/bin/true", "--", "--environment=x", "-n1", "a", ":", "-n1", "b"], [:], 64,
             "toolbox-srun: error: heterogeneous steps (':' between components) cannot be combined with --environment\n"),
            ("toolbox-srun", ["--wrap", "--srun", "/bin/true", "--", "-n1", "a", ":", "--environment=x", "-n1", "b"], [:], 64,
             "toolbox-srun: error: heterogeneous steps (':' between components) cannot be combined with --environment\n"),
            ("toolbox-srun", ["--wrap", "--srun", "/bin/true", "--", "--environment=x", "--multi", "conf"], [:], 64,
             "toolbox-srun: error: --multi-prog cannot be combined with --environment\n"),
            ("toolbox-srun", ["--wrap", "--srun", "/bin/true", "--", "--environment=./bad.toml", "true"], [:], 65,
             "toolbox-srun: error: key 'image': \(box.path)/bad.sqsh is not a squashfs image\n  hint: images are made by img-squash (or mksquashfs); check that the path names the .sqsh file\n"),
            ("toolbox-srun", ["--wrap", "--", "hostname"], ["SRUN_REAL": "/nonexistent/srun"], 127,
             "toolbox-srun: error: cannot run /nonexistent/srun: No such file or directory\n"),
            ("toolbox-srun", ["--wrap", "--", "--environment=", "true"], [:], 64,
             "toolbox-srun: error: --environment needs a name or a path\n  hint: --environment=NAME, ./FILE.toml or /path/FILE.toml\n"),
        ]
        try box.write("noshebang.sh", "#SBATCH --environment=x\necho hi\n")
        try box.write("bad.sqsh", "not an image\n")
        try box.write("bad.toml", "image = \"\(box.path)/bad.sqsh\"\n")
        let sbatchCases: [(String, [String], [String: String], Int32, String)] = [
            ("toolbox-sbatch", ["--", "--environment=", "job.sh"], [:], 64,
             "toolbox-sbatch: error: --environment needs a name or a path\n  hint: --environment=NAME, ./FILE.toml or /path/FILE.toml\n"),
            ("toolbox-sbatch", ["--", "-t"], [:], 64, "toolbox-sbatch: error: -t needs a value\n  hint: give it after the option (-t VALUE), before the command\n"),
            ("toolbox-sbatch", ["--", "-n1", "--environment"], [:], 64,
             "toolbox-sbatch: error: --environment needs a name or a path\n  hint: --environment=NAME, ./FILE.toml or /path/FILE.toml\n"),
            ("toolbox-sbatch", ["--", "--environment=x", "noshebang.sh"], ["SBATCH_REAL": "/bin/true"], 65,
             "toolbox-sbatch: error: noshebang.sh: the batch script does not start with #! and an interpreter\n"),
            ("toolbox-sbatch", ["--", "--environment=x", "missing.sh"], ["SBATCH_REAL": "/bin/true"], 66,
             "toolbox-sbatch: error: missing.sh: no such file\n  hint: check the path (relative paths are taken from the current directory)\n"),
            ("toolbox-sbatch", ["--", "job.sh"], ["SBATCH_REAL": "/nonexistent/sbatch"], 127,
             "toolbox-sbatch: error: cannot run /nonexistent/sbatch: No such file or directory\n"),
            ("toolbox-salloc", ["--", "-n", "1", "true"], ["SALLOC_REAL": "/nonexistent/salloc"], 127,
             "toolbox-salloc: error: cannot run /nonexistent/salloc: No such file or directory\n"),
            ("toolbox-salloc", ["--", "--environment", "./missing.toml", "true"], ["SALLOC_REAL": "/bin/true"], 66,
             "edf-expand: error: \(box.path)/missing.toml: no such file\n  hint: check the path (relative paths are taken from the current directory)\n"
                + "toolbox-salloc: error: the environment \(box.path)/missing.toml does not render (edf-expand's message above); no allocation was asked for\n"),
            ("toolbox-salloc", ["--", "-n"], ["SALLOC_REAL": "/bin/true"], 64,
             "toolbox-salloc: error: -n needs a value\n  hint: give it after the option (-n VALUE), before the command\n"),
        ]
        for (tool, arguments, environment, status, stderr) in cases + sbatchCases {
            let result = try box.run(tool, arguments, environment: environment)
            #expect(result.status == status && result.stderr.hasPrefix(stderr) && result.stdout.isEmpty, "\(tool) \(arguments): \(result)")
        }
    }

    /// The file sbatch gets the script in goes to $TMPDIR, else /tmp (a TMPDIR that cannot be
    /// written does not stop a submission, as it would not stop sbatch).
    @Test func theScriptForSbatchFallsBackToTmp() throws {
        let box = try Sandbox()
        let fake = try box.write("fake-sbatch", "#!/bin/sh\nfor a; do case \"$a\" in -*) ;; *) cat \"$a\";; esac; done\n")
        chmod(fake, 0o755)
        let result = try box.run("toolbox-sbatch", ["--sbatch", fake, "--"], environment: ["TMPDIR": "/nonexistent"], stdin: "#!/bin/sh\necho hi\n")
        #expect(result.status == 0 && result.stdout == "#!/bin/sh\necho hi\n", "\(result)")
    }

    /// Installed, the wrappers live in PREFIX/lib/toolbox/bin and the commands in PREFIX/bin
    /// (contrib/install.sh): a wrapper finds its command there when PREFIX/bin is not on PATH.
    @Test func installedWrappersFindTheirCommands() throws {
        let box = try Sandbox()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        try box.mkdir("prefix/lib/toolbox/bin")
        try box.mkdir("prefix/bin")
        for wrapper in ["srun", "sbatch", "salloc"] {
            let installed = box.path + "/prefix/lib/toolbox/bin/" + wrapper
            try FileManager.default.copyItem(atPath: repository.path + "/bin/" + wrapper, toPath: installed)
            // A stand-in for the command (this test is about the wrapper's lookup only).
            let command = try box.write("prefix/bin/toolbox-" + wrapper, "#!/bin/sh\necho \"$0 $*\"\n")
            chmod(command, 0o755)
            let result = try Tools.run(
                absolute: installed, ["--environment=x", "true"], environment: ["PATH": "/usr/bin:/bin", "SRUN_REAL": "none"], in: box.url)
            #expect(result.status == 0 && result.stdout.hasPrefix(command + " "), "\(wrapper): \(result)")
        }
    }
}

/// `srun --environment=...` through bin/srun on a real single-node Slurm (LocalSlurm), as the
/// test user, with the image in a real registry on loopback.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct SrunWrapperTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct Cluster {
        var setup: NamespaceEnterTests.Setup
        var slurm: LocalSlurm
        var registry: LocalRegistry
        var box: Sandbox { setup.box }
        var environment: [String: String]

        /// bin/srun (or another command) as the test user, in the sandbox.
        func run(_ arguments: [String], extra: [String: String] = [:], stdin: String? = nil) throws -> ToolResult {
            try Tools.run(
                absolute: "/usr/bin/setpriv",
                ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups"] + arguments,
                environment: environment.merging(extra) { $1 }, in: box.url, stdin: stdin)
        }

        func start(_ arguments: [String], extra: [String: String] = [:]) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups"] + arguments
            process.environment = environment.merging(extra) { $1 }
            process.currentDirectoryURL = box.url
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
    }

    static func setUp(taskProlog: String? = nil, nodes: Int = 1) throws -> Cluster? {
        guard let setup = try NamespaceEnterTests.setUp() else { return nil }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/umoci") else {
            print("skipped: umoci is not installed")
            return nil
        }
        guard let registry = try LocalRegistry.start(accessLog: true), let slurm = try LocalSlurm.start(taskProlog: taskProlog, nodes: nodes) else { return nil }
        let box = setup.box
        // A busybox image, pushed to the registry.
        try registry.pushBusybox(as: "test/busybox", workingIn: box.path)
        // A two-level EDF chain: the site's defaults, the job's environment.
        try box.write("shared/site.txt", "site mount\n")
        try box.write("jobdata/job.txt", "job mount\n")
        try box.write("edf/site.toml", """
            image = "\(registry.host)/test/busybox:1"
            mounts = ["\(box.path)/shared:/shared"]
            [env]
            FROM_SITE = "site"
            """)
        try box.write("edf/job.toml", """
            base_environment = "site"
            mounts = ["\(box.path)/jobdata:/jobdata:ro"]
            [env]
            FROM_JOB = "job"
            """)
        for directory in ["store", "home"] {
            try box.mkdir(directory)
            chown(box.path + "/" + directory, uid_t(setup.uid), gid_t(setup.gid))
        }
        chown(box.path, uid_t(setup.uid), gid_t(setup.gid))
        let build = URL(fileURLWithPath: Tools.path("ns-enter")).deletingLastPathComponent().path
        var environment = slurm.environment
        environment["PATH"] = repository.appendingPathComponent("bin").path + ":" + build + ":/usr/bin:/bin"
        environment["HOME"] = box.path + "/home"
        environment["EDF_PATH"] = box.path + "/edf"
        environment["EDF_IMAGESTORE"] = box.path + "/store"
        environment["ENROOT_ALLOW_HTTP"] = "yes"
        return Cluster(setup: setup, slurm: slurm, registry: registry, environment: environment)
    }

    @Test func fourTasksShareOneContainerWithTheEDFChainsEnvAndMounts() throws {
        guard let cluster = try Self.setUp() else { return }
        let script = "echo \"$SLURM_PROCID $FROM_IMAGE $FROM_SITE $FROM_JOB $(cat /shared/site.txt /jobdata/job.txt /data/image.txt | tr '\\n' ,) $(readlink /proc/self/ns/mnt)\""
        let result = try cluster.run(["srun", "-n", "4", "--environment=job", "sh", "-c", script])
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n").map(String.init).sorted()
        #expect(lines.count == 4, "\(result)")
        let namespaces = Set(lines.map { $0.split(separator: " ").last.map(String.init) ?? "" })
        #expect(namespaces.count == 1, "four tasks, one container: \(result)")
        for (index, line) in lines.enumerated() {
            #expect(line.hasPrefix("\(index) yes site job site mount,job mount,from the image, mnt:["), "\(result)")
        }
        // A new job is named after the command, as srun names it (not after ns-enter).
        let named = try cluster.run(["srun", "-n", "1", "--environment=job", "sh", "-c", "echo $SLURM_JOB_NAME"])
        #expect(named.status == 0 && named.stdout == "sh\n", "\(named)")
        // A name given in a cluster of short options stays.
        let clustered = try cluster.run(["srun", "-lJmine", "-n", "1", "--environment=job", "sh", "-c", "echo $SLURM_JOB_NAME"])
        #expect(clustered.status == 0 && clustered.stdout == "0: mine\n", "\(clustered)")
        // A unique prefix of --environment, as srun takes one.
        let prefix = try cluster.run(["srun", "--envi=job", "-n", "1", "cat", "/data/image.txt"])
        #expect(prefix.status == 0 && prefix.stdout == "from the image\n", "\(prefix)")
        // Without --environment: exactly srun (the host's files, no container).
        let plain = try cluster.run(["srun", "-n", "1", "sh", "-c", "test -e /shared || echo host"])
        #expect(plain.status == 0 && plain.stdout == "host\n", "\(plain)")
        // An EDF without an image: no container, as the Container Engine does (spec 1.1).
        try cluster.box.write("edf/noimage.toml", "[annotations]\ncom.hooks.cxi.enabled = \"false\"\n")
        let noImage = try cluster.run(["srun", "-n", "2", "--environment=noimage", "sh", "-c", "test -e /shared || echo host"])
        #expect(noImage.status == 0 && noImage.stdout == "host\nhost\n", "\(noImage)")
        #expect(noImage.stderr.contains("toolbox-srun: note: the environment noimage names no image: the step runs without a container\n"), "\(noImage)")
        // --dry-run prints the stages; -v times them.
        let dry = try cluster.run(["srun", "--dry-run", "-n", "2", "--environment=job", "true"])
        #expect(dry.status == 0 && dry.stdout.contains("edf-expand job | ") && dry.stdout.contains(" -n 2 ") && dry.stdout.contains("--name %j.%s.%N -- true"), "\(dry)")
        let verbose = try cluster.run(["srun", "-v", "-n", "1", "--environment=job", "true"])
        #expect(verbose.status == 0 && verbose.stderr.contains("toolbox-srun: edf-expand "), "\(verbose)")
        #expect(NamespaceEnterTests.waitForNoLeftovers(cluster.setup).isEmpty)
    }

    /// Two slurmd on this host stand for two nodes: each node's tasks share one container of its
    /// own (the first task there creates it), the document reaches both, nothing is pulled twice.
    @Test func twoNodesRunAContainerEach() throws {
        guard let cluster = try Self.setUp(nodes: 2) else { return }
        let script = "echo \"$SLURMD_NODENAME $SLURM_PROCID $FROM_SITE $FROM_JOB $(cat /data/image.txt) $(readlink /proc/self/ns/mnt)\""
        let result = try cluster.run(["srun", "-N", "2", "-n", "4", "--environment=job", "sh", "-c", script])
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines.count == 4 && lines.allSatisfy { $0.count == 8 && $0[2...6] == ["site", "job", "from", "the", "image"] }, "\(result)")
        var namespaces: [String: Set<String>] = [:]
        for line in lines where line.count == 8 { namespaces[line[0], default: []].insert(line[7]) }
        #expect(namespaces.keys.sorted() == ["n1", "n2"], "\(result)")
        #expect(namespaces.values.allSatisfy { $0.count == 1 }, "one container per node: \(result)")
        #expect(Set(namespaces.values.flatMap { $0 }).count == 2, "two nodes, two containers: \(result)")
        let log = try String(contentsOf: cluster.registry.directory.appendingPathComponent("access.log"), encoding: .utf8)
        let gets = log.split(separator: "\n").filter { $0.contains("\"GET /v2/test/busybox/blobs/sha256:") && $0.contains("\" 200 ") }
            .compactMap { line in line.firstRange(of: "sha256:").map { String(line[$0.lowerBound...].prefix(71)) } }
        #expect(!gets.isEmpty && gets.count == Set(gets).count, "each blob pulled once, on the submitting side: \(gets)")
        #expect(NamespaceEnterTests.waitForNoLeftovers(cluster.setup).isEmpty)
    }

    /// EDF_IMAGESTORE=void: each step its own temporary image (a step that ends first does not
    /// take the other's away), removed when the step ends; the wrapper, which waits for srun to
    /// remove it, passes on the signals it gets, so that a killed wrapper takes its step along.
    @Test func voidImagesAreEachStepsOwnAndGoWithIt() throws {
        guard let cluster = try Self.setUp() else { return }
        try cluster.box.mkdir("tmp")
        chown(cluster.box.path + "/tmp", uid_t(cluster.setup.uid), gid_t(cluster.setup.gid))
        let void = ["EDF_IMAGESTORE": "void", "TMPDIR": cluster.box.path + "/tmp"]
        let steps = try cluster.run(
            [
                "salloc", "-n", "2", "sh", "-c",
                "srun -n 1 --environment=job sleep 2 & sleep 1; srun -n 1 --environment=job cat /data/image.txt; echo second=$?; wait; echo first=$?",
            ], extra: void)
        #expect(steps.status == 0 && steps.stdout.contains("from the image\nsecond=0\n") && steps.stdout.hasSuffix("first=0\n"), "\(steps)")
        let left = try Tools.run(absolute: "/usr/bin/find", [cluster.box.path + "/tmp", "-name", "*.sqsh*"], in: cluster.box.url)
        #expect(left.stdout.isEmpty, "temporary images left: \(left.stdout)")
        // Nor the job's directory, once its last step has ended.
        let directories = try Tools.run(absolute: "/usr/bin/find", [cluster.box.path + "/tmp", "-mindepth", "2", "-path", "*/toolbox-images-*"], in: cluster.box.url)
        #expect(directories.stdout.isEmpty, "directories left: \(directories.stdout)")

        let step = try cluster.start(["srun", "-n", "1", "--environment=job", "sleep", "60"], extra: void)
        var running = false
        for _ in 0..<100 where !running {
            usleep(100_000)
            running = (try? cluster.run(["squeue", "-h", "-s", "-o", "%i"]))?.stdout.contains(".0") == true
        }
        #expect(running, "the step did not start")
        kill(step.processIdentifier, SIGTERM)
        step.waitUntilExit()
        #expect(step.terminationStatus != 0)
        var gone = false
        for _ in 0..<100 where !gone {
            usleep(100_000)
            gone = (try? cluster.run(["squeue", "-h", "-s", "-o", "%i"]))?.stdout.contains(".0") == false
        }
        #expect(gone, "the step outlived its wrapper")
        let after = try Tools.run(absolute: "/usr/bin/find", [cluster.box.path + "/tmp", "-name", "*.sqsh*"], in: cluster.box.url)
        #expect(after.stdout.isEmpty, "temporary images left: \(after.stdout)")
    }

    /// salloc --environment: the allocation's shell stays on the host, its steps run in the
    /// container without their own --environment; an environment that does not render fails
    /// before any allocation.
    @Test func sallocWithAnEnvironmentRunsItsStepsInTheContainer() throws {
        guard let cluster = try Self.setUp() else { return }
        let script = """
            srun -n 2 cat /data/image.txt
            test -e /data/image.txt && echo shell:container || echo shell:host
            TOOLBOX_SALLOC_ENVIRONMENT= srun -n 1 sh -c 'test -e /data/image.txt || echo step:host'
            srun -n 1 sh -c 'echo "inside:${TOOLBOX_SALLOC_ENVIRONMENT-unset}"'
            """
        let result = try cluster.run(["salloc", "--environment=job", "-n", "2", "sh", "-c", script])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "from the image\nfrom the image\nshell:host\nstep:host\ninside:unset\n", "\(result)")
        let typo = try cluster.run(["salloc", "--environment=nothere", "-n", "1", "true"])
        #expect(typo.status == 66, "\(typo)")
        #expect(
            typo.stderr.contains("edf-expand: error: environment \"nothere\" not found")
                && typo.stderr.contains("toolbox-salloc: error: the environment nothere does not render (edf-expand's message above); no allocation was asked for"),
            "\(typo)")
        // A batch job submitted from the allocation is not the allocation: its steps run on the host.
        try cluster.box.write("home/plain.sh", "#!/bin/sh\nsrun -n 1 sh -c 'test -e /data/image.txt || echo batch:host'\n")
        let submitted = try cluster.run([
            "salloc", "--environment=job", "-n", "1", "sbatch", "--wait", "-o", cluster.box.path + "/home/plain.out", cluster.box.path + "/home/plain.sh",
        ])
        #expect(submitted.status == 0, "\(submitted)")
        #expect(try String(contentsOfFile: cluster.box.path + "/home/plain.out", encoding: .utf8) == "batch:host\n")
        // Without --environment: exactly salloc.
        let plain = try cluster.run(["salloc", "-n", "1", "sh", "-c", "srun -n 1 sh -c 'test -e /data/image.txt || echo host'"])
        #expect(plain.status == 0 && plain.stdout == "host\n", "\(plain)")
    }

    @Test func twoStepsAtOncePullTheImageOnce() throws {
        guard let cluster = try Self.setUp() else { return }
        let steps = try (0..<2).map { _ in try cluster.start(["srun", "-n", "2", "--environment=job", "cat", "/data/image.txt"]) }
        for step in steps { step.waitUntilExit() }
        #expect(steps.allSatisfy { $0.terminationStatus == 0 })
        let log = try String(contentsOf: cluster.registry.directory.appendingPathComponent("access.log"), encoding: .utf8)
        let gets = log.split(separator: "\n").filter { $0.contains("\"GET /v2/test/busybox/blobs/sha256:") && $0.contains("\" 200 ") }
            .compactMap { line in line.firstRange(of: "sha256:").map { String(line[$0.lowerBound...].prefix(71)) } }
        #expect(!gets.isEmpty && gets.count == Set(gets).count, "each blob fetched once: \(gets)")
        let store = try FileManager.default.contentsOfDirectory(atPath: cluster.box.path + "/store").filter { $0.hasSuffix(".sqsh") }
        #expect(store.count == 1, "\(store)")
    }

    @Test func aFailingHookFailsTheStepReadablyAndBatchScriptsUseTheWrapper() throws {
        guard let cluster = try Self.setUp() else { return }
        let box = cluster.box
        try box.write("sysconf/hooks.d/50-broken.sh", "#!/bin/sh\necho 'broken hook: the GPU driver is missing' >&2\nexit 3\n")
        chmod(box.path + "/sysconf/hooks.d/50-broken.sh", 0o755)
        let failed = try cluster.run(["srun", "-n", "2", "--environment=job", "true"], extra: ["TOOLBOX_SYSCONF_PATH": box.path + "/sysconf"])
        #expect(failed.status != 0, "\(failed)")
        #expect(failed.stderr.contains("broken hook: the GPU driver is missing"), "\(failed)")
        #expect(failed.stderr.contains("ns-enter: error: hook \(box.path)/sysconf/hooks.d/50-broken.sh exited with status 3"), "\(failed)")

        // An sbatch script that uses srun --environment inside.
        try box.write("job.sh", """
            #!/bin/sh
            #SBATCH -n 2
            srun --environment=job sh -c 'echo "task $SLURM_PROCID: $FROM_JOB $(cat /jobdata/job.txt)"'
            """)
        let batch = try cluster.run(["sbatch", "--wait", "-o", box.path + "/home/batch.out", box.path + "/job.sh"])
        #expect(batch.status == 0, "\(batch)")
        let output = try String(contentsOfFile: box.path + "/home/batch.out", encoding: .utf8)
        #expect(output.split(separator: "\n").sorted() == ["task 0: job job mount", "task 1: job job mount"], "\(output)")
        #expect(NamespaceEnterTests.waitForNoLeftovers(cluster.setup).isEmpty)
    }

    /// `#SBATCH --environment` (and sbatch --environment): the whole batch script runs in the
    /// container, as with the reference system; without it, bin/sbatch is exactly sbatch.
    @Test func sbatchWithAnEnvironmentRunsTheBatchScriptInTheContainer() throws {
        guard let cluster = try Self.setUp() else { return }
        let box = cluster.box
        try box.write("batch-in.sh", """
            #!/bin/sh
            #SBATCH --environment=job -n 1
            #SBATCH -o \(box.path)/home/in.out
            echo "$FROM_SITE $FROM_JOB $(cat /jobdata/job.txt /data/image.txt | tr '\\n' ,) args:$* name:$SLURM_JOB_NAME"
            test -e \(box.path)/home && echo "the host's files are not here" || echo "no host files"
            """)
        let submitted = try cluster.run(["sbatch", "--wait", "batch-in.sh", "one", "two"])
        #expect(submitted.status == 0, "\(submitted)")
        #expect(submitted.stdout.hasPrefix("Submitted batch job "), "\(submitted)")
        #expect(submitted.stderr.contains("toolbox-sbatch: warning: the whole batch script runs in the container (experimental"), "\(submitted)")
        let output = try String(contentsOfFile: box.path + "/home/in.out", encoding: .utf8)
        #expect(output == "site job job mount,from the image, args:one two name:batch-in.sh\nno host files\n", "\(output)")

        // An EDF without an image: the script is submitted as it is and runs on the host.
        try box.write("edf/noimage-batch.toml", "[annotations]\ncom.hooks.cxi.enabled = \"false\"\n")
        try box.write("batch-host.sh", "#!/bin/sh\n#SBATCH --environment=noimage-batch\n#SBATCH -o \(box.path)/home/host.out\ntest -e \(box.path)/home && echo host files\n")
        let host = try cluster.run(["sbatch", "--wait", "batch-host.sh"])
        #expect(host.status == 0 && host.stderr.contains("toolbox-sbatch: note: the environment noimage-batch names no image: the job runs without a container\n"), "\(host)")
        #expect(!host.stderr.contains("runs in the container"), "no container, no warning that there is one: \(host)")
        #expect((try? String(contentsOfFile: box.path + "/home/host.out", encoding: .utf8)) == "host files\n")

        // An interpreter the image lacks: said so, status 127.
        try box.write("batch-bash.sh", "#!/bin/bash\n#SBATCH --environment=job\n#SBATCH -o \(box.path)/home/bash.out\necho never\n")
        let bash = try cluster.run(["sbatch", "--wait", "batch-bash.sh"])
        #expect(bash.status == 127, "\(bash)")
        let bashOutput = try String(contentsOfFile: box.path + "/home/bash.out", encoding: .utf8)
        #expect(bashOutput.contains("ns-enter: error: command /bin/bash not found in the container\n  hint: the image has no /bin/bash: check the path, or add the program to the image\n"), "\(bashOutput)")

        // The image needs no /bin/sh and no writable /tmp of its own: the script reaches its
        // interpreter on a descriptor opened on the node (here /bin is hidden by a tmpfs, /tmp is
        // read-only, and the interpreter is a busybox bound elsewhere).
        try box.mkdir("readonly")
        try box.write("edf/bare.toml", """
            base_environment = "job"
            mounts = ["tmpfs:/bin", "\(box.path)/readonly:/tmp:ro", "/bin/busybox:/opt/busybox:ro"]
            """)
        try box.write("batch-bare.sh", "#!/opt/busybox sh\n#SBATCH --environment=bare\n#SBATCH -o \(box.path)/home/bare.out\n/opt/busybox ls /bin /tmp; echo \"ran as $0 with $*\"\n")
        let bare = try cluster.run(["sbatch", "--wait", "batch-bare.sh", "x"])
        #expect(bare.status == 0, "\(bare)")
        #expect((try? String(contentsOfFile: box.path + "/home/bare.out", encoding: .utf8)) == "/bin:\n\n/tmp:\nran as /dev/fd/9 with x\n")

        // A script in another encoding than UTF-8 (a Latin-1 comment and output): byte for byte.
        try box.write("batch-latin1.sh", Array("#!/bin/sh\n#SBATCH --environment=job\n#SBATCH -o \(box.path)/home/latin1.out\n# Autor: Jos".utf8) + [0xE9] + Array("\necho 'caf".utf8) + [0xE9] + Array("'\n".utf8))
        let latin1 = try cluster.run(["sbatch", "--wait", "batch-latin1.sh"])
        #expect(latin1.status == 0, "\(latin1)")
        #expect((try? [UInt8](Data(contentsOf: URL(fileURLWithPath: box.path + "/home/latin1.out")))) == Array("caf".utf8) + [0xE9, 0x0A], "\(latin1)")

        // The batch script is the job's process in the container: a signal Slurm sends it reaches
        // its trap. A #! line's argument is kept.
        try box.write("batch-signal.sh", """
            #!/bin/sh -e
            #SBATCH --environment=job
            #SBATCH -o \(box.path)/home/signal.out
            trap 'echo got USR1; exit 5' USR1
            echo ready
            while true; do sleep 0.1; done
            """)
        let queued = try cluster.run(["sbatch", "--parsable", "batch-signal.sh"])
        let job = queued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(queued.status == 0 && !job.isEmpty, "\(queued)")
        var ready = false
        for _ in 0..<150 where !ready {
            usleep(100_000)
            ready = (try? String(contentsOfFile: box.path + "/home/signal.out", encoding: .utf8))?.contains("ready") == true
        }
        #expect(ready, "the batch job did not start")
        let signalled = try cluster.run(["scancel", "--batch", "--signal=USR1", job])
        #expect(signalled.status == 0, "\(signalled)")
        var ended = false
        for _ in 0..<150 where !ended {
            usleep(100_000)
            ended = (try? cluster.run(["squeue", "-h", "-j", job]))?.stdout.isEmpty == true
        }
        let signalOutput = (try? String(contentsOfFile: box.path + "/home/signal.out", encoding: .utf8)) ?? ""
        #expect(ended && signalOutput == "ready\ngot USR1\n", "\(signalOutput)")

        // A plain script on stdin: named sbatch, as sbatch names it.
        let piped = try cluster.run(
            ["sbatch", "--wait", "-o", box.path + "/home/piped.out"], stdin: "#!/bin/sh\necho $SLURM_JOB_NAME\n")
        #expect(piped.status == 0, "\(piped)")
        #expect(try String(contentsOfFile: box.path + "/home/piped.out", encoding: .utf8) == "sbatch\n")

        // srun --environment inside a job submitted with --export=NONE (SLURM_EXPORT_ENV=NONE).
        // (The job gets none of this side's variables: the script sets what the test needs.)
        let exports = ["PATH", "HOME", "EDF_PATH", "EDF_IMAGESTORE", "ENROOT_ALLOW_HTTP", "SLURM_CONF"].compactMap { name in
            cluster.environment[name].map { "export \(name)='\($0)'" }
        }.joined(separator: "\n")
        try box.write("batch-none.sh", "#!/bin/sh\n#SBATCH -o \(box.path)/home/none.out\n\(exports)\nsrun -n 1 --environment=job cat /data/image.txt\n")
        let none = try cluster.run(["sbatch", "--wait", "--export=NONE", "batch-none.sh"])
        #expect(none.status == 0, "\(none)")
        #expect(try String(contentsOfFile: box.path + "/home/none.out", encoding: .utf8) == "from the image\n")

        // On the command line, with --wrap.
        let wrapped = try cluster.run(["sbatch", "--wait", "--environment=job", "-o", box.path + "/home/wrap.out", "--wrap", "cat /data/image.txt"])
        #expect(wrapped.status == 0, "\(wrapped)")
        #expect(try String(contentsOfFile: box.path + "/home/wrap.out", encoding: .utf8) == "from the image\n")

        // --dry-run submits nothing and shows the batch script.
        let dry = try cluster.run(["sbatch", "--dry-run", "batch-in.sh"])
        #expect(dry.status == 0, "\(dry)")
        #expect(dry.stdout.contains("edf-expand job | ") && dry.stdout.contains("#SBATCH -n 1\n") && dry.stdout.contains("--environment-variable TOOLBOX_ENVIRONMENT"), "\(dry)")

        // A failing stage: nothing submitted, the stage's message and status.
        try box.write("batch-bad.sh", "#!/bin/sh\n#SBATCH --environment=nothere\ntrue\n")
        let bad = try cluster.run(["sbatch", "batch-bad.sh"])
        #expect(bad.status == 66, "\(bad)")
        #expect(bad.stderr.contains("edf-expand: error: environment \"nothere\" not found") && bad.stderr.contains("toolbox-sbatch: error: the edf-expand stage failed (exit status 66); the job was not started"), "\(bad)")

        // EDF_IMAGESTORE=void: a temporary image cannot wait for a batch job.
        let void = try cluster.run(["sbatch", "batch-in.sh"], extra: ["EDF_IMAGESTORE": "void"])
        #expect(void.status == 65, "\(void)")
        #expect(void.stderr.hasPrefix("toolbox-sbatch: error: key 'EDF_IMAGESTORE': void (a temporary image) cannot serve a batch job"), "\(void)")

        // Without an environment: exactly sbatch (the host's files are there).
        try box.write("batch-plain.sh", "#!/bin/sh\n#SBATCH -o \(box.path)/home/plain.out\ntest -e \(box.path)/home && echo host\n")
        let plain = try cluster.run(["sbatch", "--wait", "batch-plain.sh"])
        #expect(plain.status == 0, "\(plain)")
        #expect(try String(contentsOfFile: box.path + "/home/plain.out", encoding: .utf8) == "host\n")
        #expect(NamespaceEnterTests.waitForNoLeftovers(cluster.setup).isEmpty)
    }

    /// TOOLBOX_SRUN_PULL=nodes: the submitting side only renders; contrib/slurm/task-prolog.sh
    /// pulls and squashes on the node, once for the tasks of the node.
    @Test func theTaskPrologRecipePullsOnTheNode() throws {
        let prolog = Self.repository.appendingPathComponent("contrib/slurm/task-prolog.sh").path
        guard let cluster = try Self.setUp(taskProlog: prolog) else { return }
        let dry = try cluster.run(["srun", "--dry-run", "--environment=job", "true"], extra: ["TOOLBOX_SRUN_PULL": "nodes"])
        #expect(dry.stdout.hasPrefix(Tools.path("edf-expand") + " job > environment.json\n"), "\(dry)")
        let result = try cluster.run(["srun", "-n", "3", "--environment=job", "cat", "/data/image.txt"], extra: ["TOOLBOX_SRUN_PULL": "nodes"])
        #expect(result.status == 0 && result.stdout == "from the image\nfrom the image\nfrom the image\n", "\(result)")
        let store = try FileManager.default.contentsOfDirectory(atPath: cluster.box.path + "/store").filter { $0.hasSuffix(".sqsh") }
        #expect(store.count == 1, "\(store)")
        // A step the wrapper pulled for: the prolog has nothing to do (one manifest request, the
        // wrapper's, not one more per node).
        let log = cluster.registry.directory.appendingPathComponent("access.log")
        let manifests = { () -> Int in
            ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("GET /v2/test/busybox/manifests/") }.count
        }
        let before = manifests()
        let here = try cluster.run(["srun", "-n", "2", "--environment=job", "cat", "/data/image.txt"])
        #expect(here.status == 0 && manifests() == before + 1, "\(here) \(manifests()) \(before)")
        // EDF_IMAGESTORE=void pulled on the node: the image goes to the node's TMPDIR (the epilog
        // cleans it), never to a shared SCRATCH that nothing would clean.
        try cluster.box.mkdir("scratch")
        chown(cluster.box.path + "/scratch", uid_t(cluster.setup.uid), gid_t(cluster.setup.gid))
        let void = try cluster.run(
            ["srun", "-n", "1", "--environment=job", "cat", "/data/image.txt"],
            extra: ["TOOLBOX_SRUN_PULL": "nodes", "EDF_IMAGESTORE": "void", "SCRATCH": cluster.box.path + "/scratch"])
        #expect(void.status == 0 && void.stdout == "from the image\n", "\(void)")
        let onScratch = try Tools.run(absolute: "/usr/bin/find", [cluster.box.path + "/scratch", "-name", "*.sqsh"], in: cluster.box.url)
        #expect(onScratch.stdout.isEmpty, "\(onScratch.stdout)")
        // A pull that fails on the node: its messages reach the task's output, the task does not run.
        try cluster.box.write("edf/missing.toml", "image = \"\(cluster.registry.host)/test/busybox:nope\"\n")
        let failed = try cluster.run(["srun", "-n", "1", "--environment=missing", "echo", "ran"], extra: ["TOOLBOX_SRUN_PULL": "nodes"])
        #expect(failed.status != 0 && !failed.stdout.contains("ran"), "\(failed)")
        #expect(failed.stdout.contains("img-pull: error: ") && failed.stdout.contains("toolbox-task-prolog: error: cannot pull the image of this step"), "\(failed)")
    }

    /// An EDF with a containerfile: built once on the submitting side (ch-image, as the test
    /// user), before img-squash; every task runs in the built image; a second step reuses it.
    @Test func aContainerfileIsBuiltOnceForTheStep() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ch-image") else {
            print("skipped: ch-image is not installed (apt-get install charliecloud-builders)")
            return
        }
        guard let cluster = try Self.setUp() else { return }
        try cluster.box.write("proj/Containerfile", "ARG BASE_IMAGE\nFROM $BASE_IMAGE\nRUN echo built-for-the-step > /built.txt\nWORKDIR /data\n")
        try cluster.box.write("edf/build.toml", "base_environment = \"job\"\ncontainerfile = \"\(cluster.box.path)/proj/Containerfile\"\n")
        let extra = ["CH_IMAGE_STORAGE": cluster.box.path + "/ch-storage"]
        let result = try cluster.run(["srun", "-n", "2", "--environment=build", "sh", "-c", "echo $(cat /built.txt image.txt) $FROM_JOB"], extra: extra)
        #expect(result.status == 0 && result.stdout == String(repeating: "built-for-the-step from the image job\n", count: 2), "\(result)")
        let again = try cluster.run(["srun", "-v", "-n", "1", "--environment=build", "cat", "/built.txt"], extra: extra)
        #expect(again.status == 0 && again.stdout == "built-for-the-step\n", "\(again)")
        #expect(again.stderr.contains("img-build: using the image built before") && again.stderr.contains("toolbox-srun: edf-expand "), "\(again)")
        #expect(NamespaceEnterTests.waitForNoLeftovers(cluster.setup).isEmpty)
    }

    /// TOOLBOX_SRUN_CACHE: a job's steps share the blocks their FUSE servers decompress, in a
    /// directory of the job's own on the node, which contrib/slurm/epilog.sh removes.
    @Test func theStepsOfAJobShareABlockCacheThatTheEpilogRemoves() throws {
        guard let cluster = try Self.setUp() else { return }
        try cluster.box.mkdir("nodecache")
        chmod(cluster.box.path + "/nodecache", 0o1777)  // as /tmp
        let extra = ["TOOLBOX_SRUN_CACHE": cluster.box.path + "/nodecache"]
        let result = try cluster.run(["srun", "-n", "2", "--environment=job", "sh", "-c", "cat /data/image.txt; echo $SLURM_JOB_ID"], extra: extra)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(result.status == 0 && lines.count == 4 && lines.filter { $0 == "from the image" }.count == 2, "\(result)")
        let job = try #require(lines.first { $0.allSatisfy(\.isNumber) })
        let jobCache = "\(cluster.box.path)/nodecache/toolbox-cache-\(cluster.setup.uid)/\(job)"
        let blocks = try shell("find '\(jobCache)' -type f | wc -l")
        #expect(Int(blocks.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 > 0, "blocks cached for job \(job): \(blocks)")
        // NS_ENTER_CACHE is exported with the document when srun's --export lists variables.
        let dry = try cluster.run(["srun", "--dry-run", "--export=NONE", "--environment=job", "true"], extra: extra)
        #expect(dry.stdout.contains("--export=TOOLBOX_ENVIRONMENT,NS_ENTER_CACHE "), "\(dry)")
        // The epilog (root, on the node, at the job's end) removes the job's directory.
        let epilog = Self.repository.appendingPathComponent("contrib/slurm/epilog.sh").path
        // A killed step's temporary image on the user's SCRATCH (TOOLBOX_VOID_SCRATCH) goes too.
        let name = try #require(getpwuid(uid_t(cluster.setup.uid))).pointee.pw_name.map { String(cString: $0) } ?? ""
        let scratchImage = "\(cluster.box.path)/scratch/\(name)/toolbox-images-\(cluster.setup.uid)/job-\(job)/run-1"
        try FileManager.default.createDirectory(atPath: scratchImage, withIntermediateDirectories: true)
        try cluster.box.write("scratch/\(name)/toolbox-images-\(cluster.setup.uid)/job-\(job)/run-1/image.sqsh", "image")
        _ = try shell("chown -R \(cluster.setup.uid):\(cluster.setup.gid) '\(cluster.box.path)/scratch/\(name)'")
        try shell(
            epilog,
            environment: [
                "SLURM_JOB_ID": job, "SLURM_JOB_UID": String(cluster.setup.uid), "SLURM_JOB_GID": String(cluster.setup.gid), "SLURM_JOB_USER": name,
                "TOOLBOX_VOID_SCRATCH": cluster.box.path + "/scratch/%u",
            ].merging(extra) { $1 })
        #expect(!FileManager.default.fileExists(atPath: jobCache))
        #expect(!FileManager.default.fileExists(atPath: "\(cluster.box.path)/scratch/\(name)/toolbox-images-\(cluster.setup.uid)/job-\(job)"))
        #expect(NamespaceEnterTests.waitForNoLeftovers(cluster.setup).isEmpty)
    }

    @Test func localModeRunsOneTaskWithoutSlurm() throws {
        guard let setup = try NamespaceEnterTests.setUp() else { return }
        let box = setup.box
        try box.write("edf/local.toml", "image = \"\(setup.image)\"\n[env]\nGREETING = \"hello\"\n")
        let result = try NamespaceEnterTests.run(
            setup, ["--local", "--wrap", "--", "-n", "3", "--environment=local", "sh", "-c", "echo $GREETING; cat /data/hello.txt"],
            tool: "toolbox-srun", environment: ["EDF_PATH": box.path + "/edf"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "hello\nhello from the image\n", "\(result)")
        #expect(result.stderr.contains("toolbox-srun: note: no Slurm here (local mode): one task runs here; srun's options are left aside: -n 3"), "\(result)")
        try box.write("edf/noimage.toml", "mounts = [\"/tmp:/data\"]\n")
        let noImage = try NamespaceEnterTests.run(
            setup, ["--local", "--environment=noimage", "--", "sh", "-c", "echo no container"], tool: "toolbox-srun", environment: ["EDF_PATH": box.path + "/edf"])
        #expect(noImage.status == 0 && noImage.stdout == "no container\n", "\(noImage)")
        let missing = try NamespaceEnterTests.run(setup, ["--local", "--environment", "nothere", "--", "true"], tool: "toolbox-srun", environment: ["EDF_PATH": box.path + "/edf"])
        #expect(missing.status == 66 && missing.stderr.hasSuffix("toolbox-srun: error: the edf-expand stage failed (exit status 66); the step was not started\n"), "\(missing)")
        // A document too large for one variable: refused before anything starts (exec said
        // "Argument list too long", and sbatch submitted a job bound to fail).
        let variables = (0..<1500).map { "V\($0) = \"\(String(repeating: "x", count: 100))\"" }.joined(separator: "\n")
        try box.write("edf/big.toml", "image = \"\(setup.image)\"\n[env]\n" + variables + "\n")
        let big = try NamespaceEnterTests.run(setup, ["--local", "--environment=big", "--", "true"], tool: "toolbox-srun", environment: ["EDF_PATH": box.path + "/edf"])
        #expect(big.status == 65, "\(big)")
        #expect(big.stderr.hasPrefix("toolbox-srun: error: the rendered environment is "), "\(big)")
        #expect(big.stderr.contains("KiB; it reaches the tasks in one variable, which Linux limits to 128 KiB\n  hint: make the EDF's [env] smaller"), "\(big)")
    }
}
