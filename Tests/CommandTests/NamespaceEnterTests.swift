import Foundation
import Testing

/// ns-enter and hook-run as an ordinary user (created by the tests) on an image built by the
/// tests (Tests/Fixtures/runtime_fixture.py, squashed by img-squash): real user namespaces, the
/// real FUSE server, overlayfs, bind and tmpfs mounts.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NamespaceEnterTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/runtime_fixture.py").path
    static let userName = "tbxtest"

    /// A built image and the user who runs it.
    struct Setup {
        var box: Sandbox
        var image: String
        var uid: Int
        var gid: Int
        /// A host path the image's symbolic links point at; it must never be created.
        var escape: String
    }

    /// Why these tests cannot run here, or nil.
    static let unavailable: String? = {
        guard getuid() == 0 else { return "not root: the tests create a user and make /dev/fuse usable" }
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else { return "no /dev/fuse" }
        guard FileManager.default.fileExists(atPath: "/bin/busybox") else { return "no /bin/busybox (apt-get install busybox-static)" }
        // What .ci/run does too: Debian's udev would make /dev/fuse 0666; these VMs have no udev.
        chmod("/dev/fuse", 0o666)
        if getpwnam(userName) == nil {
            let made = try? Tools.run(
                absolute: "/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/bin/sh", userName],
                in: URL(fileURLWithPath: "/"))
            guard made?.status == 0 else { return "cannot create the user \(userName): \(made.map(\.description) ?? "")" }
        }
        guard let entry = getpwnam(userName) else { return "no user \(userName)" }
        let probe = try? Tools.run(
            absolute: "/usr/bin/setpriv",
            ["--reuid=\(entry.pointee.pw_uid)", "--regid=\(entry.pointee.pw_gid)", "--clear-groups", "/usr/bin/unshare", "-Urm", "true"],
            in: URL(fileURLWithPath: "/"))
        guard probe?.status == 0 else { return "unprivileged user namespaces are not allowed here: \(probe.map(\.description) ?? "")" }
        return nil
    }()

    static func setUp() throws -> Setup? {
        if let reason = unavailable {
            print("skipped: \(reason)")
            return nil
        }
        let box = try Sandbox()
        let escape = "/tmp/toolbox-escape-\(UUID().uuidString)"
        let made = try Tools.run(absolute: "/usr/bin/python3", [fixture, box.path + "/layer.tar", escape], in: box.url)
        #expect(made.status == 0, "\(made)")
        let squashed = try box.run("img-squash", ["-q", "-o", box.path + "/image.sqsh", box.path + "/layer.tar"])
        #expect(squashed.status == 0, "\(squashed)")
        let entry = try #require(getpwnam(userName))
        return Setup(box: box, image: box.path + "/image.sqsh", uid: Int(entry.pointee.pw_uid), gid: Int(entry.pointee.pw_gid), escape: escape)
    }

    /// Runs ns-enter (or another of our tools) as the test user.
    static func run(_ setup: Setup, _ arguments: [String], tool: String = "ns-enter", environment: [String: String] = [:], stdin: String? = nil)
        throws -> ToolResult
    {
        try Tools.run(
            absolute: "/usr/bin/setpriv", ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path(tool)] + arguments,
            environment: environment, in: setup.box.url, stdin: stdin)
    }

    /// An environment document as img-squash passes it on: the image with its config.
    static func document(
        _ setup: Setup, env: [String: String] = [:], mounts: [[String: Any]] = [], workdir: String? = nil,
        entrypoint: Bool = false, writable: Bool = false, annotations: [String: String] = [:],
        imageEnv: [String] = ["PATH=/bin", "FROM_IMAGE=image", "OVERRIDDEN=image"],
        entrypointCommand: [String]? = nil, cmd: [String]? = nil, workingDir: String? = nil
    ) throws -> String {
        var config: [String: Any] = [
            "digest": "sha256:" + String(repeating: "0", count: 64), "path": "/nonexistent", "Env": imageEnv,
            "Volumes": [String](), "Labels": [String: String](),
        ]
        config["Entrypoint"] = entrypointCommand
        config["Cmd"] = cmd
        config["WorkingDir"] = workingDir
        let squash: [String: Any] = [
            "path": setup.image, "size": 0, "digest": "sha256:" + String(repeating: "0", count: 64), "compression": "zstd",
            "level": 3, "blockSize": 131072, "metadata": setup.image + ".json", "layers": ["layer.tar"], "config": config,
            "reused": false, "temporary": false,
        ]
        var document: [String: Any] = [
            "schemaVersion": 1, "image": ["path": setup.image], "entrypoint": entrypoint, "writable": writable,
            "mounts": mounts, "env": env, "annotations": annotations, "squash": squash,
        ]
        document["workdir"] = workdir
        let data = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
        return try setup.box.write("env-\(UUID().uuidString).json", String(decoding: data, as: UTF8.self))
    }

    /// Processes of the test user that ns-enter left: FUSE servers and holders (zombies aside).
    /// The FUSE server of a container whose ns-enter command line had `marker` (this test's
    /// image path or --name: other suites' containers run at the same time as the same user).
    static func fuseServer(_ setup: Setup, marker: String) -> Int32? { fuseServers(setup, marker: marker).first }

    static func fuseServers(_ setup: Setup, marker: String) -> [Int32] {
        leftovers(setup).filter { $0.contains("ns-enter-fuse") }.compactMap { line in
            guard let pid = Int32(line.split(separator: " ")[0]),
                let arguments = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))
            else { return nil }
            return String(decoding: arguments, as: UTF8.self).contains(marker) ? pid : nil
        }
    }

    static func leftovers(_ setup: Setup) -> [String] {
        var found: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(name) != nil {
            guard let comm = try? String(contentsOfFile: "/proc/\(name)/comm", encoding: .utf8),
                let status = try? String(contentsOfFile: "/proc/\(name)/status", encoding: .utf8)
            else { continue }
            let command = comm.trimmingCharacters(in: .whitespacesAndNewlines)
            guard command == "ns-enter-fuse" || command == "ns-enter-hold" || command == "ns-enter" else { continue }
            let lines = status.split(separator: "\n")
            let state = lines.first { $0.hasPrefix("State:") } ?? ""
            let uid = lines.first { $0.hasPrefix("Uid:") }?.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first
            if !state.contains("Z") && uid.map({ Int($0) == setup.uid }) == true { found.append("\(name) \(command) \(state)") }
        }
        return found
    }

    /// Starts ns-enter with `--name NAME` in the background (as the user) and waits for its
    /// holder's record; returns the process and the holder's pid.
    static func startShared(_ setup: Setup, name: String, _ arguments: [String]) throws -> (Process, String) {
        let creator = Process()
        creator.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        creator.arguments = ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path("ns-enter")] + arguments
        creator.standardOutput = FileHandle.nullDevice
        try creator.run()
        let record = "/tmp/toolbox-\(setup.uid)/containers/\(name).pid"
        var holder: String?
        for _ in 0..<100 where holder == nil {
            usleep(30_000)
            holder = (try? String(contentsOfFile: record, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return (creator, try #require(holder))
    }

    /// Waits up to 5 s for the processes ns-enter started to end; returns those left.
    static func waitForNoLeftovers(_ setup: Setup) -> [String] {
        for _ in 0..<100 {
            if leftovers(setup).isEmpty { return [] }
            usleep(50_000)
        }
        return leftovers(setup)
    }

    @Test func runsTheImagesFilesAsTheUser() throws {
        guard let setup = try Self.setUp() else { return }
        let result = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "cat /data/hello.txt; id -u; id -g; grep '^tbxtest:' /etc/passwd; stat -c %u /data/hello.txt"])
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "hello from the image", "\(result)")
        #expect(lines.count >= 3 && lines[1] == "\(setup.uid)" && lines[2] == "\(setup.gid)", "\(result)")
        #expect(lines.count > 3 && lines[3].hasPrefix("tbxtest:x:\(setup.uid):\(setup.gid):"), "the user is in /etc/passwd: \(result)")
        #expect(lines.last == "\(setup.uid)", "image files belong to the user inside: \(result)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func environmentPrecedenceAndWorkdir() throws {
        guard let setup = try Self.setUp() else { return }
        let document = try Self.document(
            setup, env: ["OVERRIDDEN": "edf", "FROM_EDF": "edf", "HOST_ONLY_UNSET": ""], workingDir: "/work")
        let result = try Self.run(
            setup, ["--environment", document, "--", "/bin/sh", "-c", "echo $FROM_HOST $FROM_IMAGE $OVERRIDDEN $FROM_EDF [${HOST_ONLY_UNSET-unset}] $PATH $LD_PRELOAD; pwd"],
            environment: ["FROM_HOST": "host", "OVERRIDDEN": "host", "HOST_ONLY_UNSET": "host", "LD_PRELOAD": "/host/lib.so"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "host image edf edf [unset] /bin\n/work\n", "\(result)")

        let explicit = try Self.document(setup, workdir: "/data", workingDir: "/work")
        let second = try Self.run(setup, ["--environment", explicit, "--", "pwd"])
        #expect(second.stdout == "/data\n", "\(second)")
        let none = try Self.document(setup)
        let third = try Self.run(setup, ["--environment", none, "--", "pwd"])
        #expect(third.stdout == "/\n", "\(third)")
        let missing = try Self.document(setup, workdir: "/no/such/dir")
        let fourth = try Self.run(setup, ["--environment", missing, "--", "pwd"])
        #expect(fourth.status == 65, "\(fourth)")
        #expect(fourth.stderr.contains("cannot change to the working directory /no/such/dir in the container"), "\(fourth)")
        // An image's WorkingDir that its tree lacks is made, as Docker makes a WORKDIR.
        let imageOnly = try Self.document(setup, workingDir: "/opt/app/run")
        let fifth = try Self.run(setup, ["--environment", imageOnly, "--", "pwd"])
        #expect(fifth.status == 0 && fifth.stdout == "/opt/app/run\n", "\(fifth)")
        // A relative one is taken from the root (Docker); one that is a file is said as the image's.
        let imageRelative = try Self.document(setup, workingDir: "opt/relative")
        let sixth = try Self.run(setup, ["--environment", imageRelative, "--", "pwd"])
        #expect(sixth.status == 0 && sixth.stdout == "/opt/relative\n", "\(sixth)")
        let imageFile = try Self.document(setup, workingDir: "/bin/busybox")
        let seventh = try Self.run(setup, ["--environment", imageFile, "--", "pwd"])
        #expect(seventh.status == 65, "\(seventh)")
        #expect(
            seventh.stderr == "ns-enter: error: the image's WorkingDir /bin/busybox is not a directory in the container\n"
                + "  hint: set workdir in the EDF (or --workdir) to a directory of the image or a mount\n", "\(seventh)")
        let relative = try Self.run(setup, ["--image", setup.image, "--workdir", "data", "--", "pwd"])
        #expect(relative.status == 64, "\(relative)")
        #expect(relative.stderr.hasPrefix("ns-enter: error: --workdir must be an absolute path in the container, not data\n"), "\(relative)")
    }

    /// ENROOT_RESTRICT_DEV=y: a /dev of the container's own, with the basic devices and
    /// pseudo-terminals from a devpts instance of its own (the host's has ptmxmode=000).
    @Test func restrictedDevHasItsOwnPseudoTerminals() throws {
        guard let setup = try Self.setUp() else { return }
        let result = try Self.run(
            setup, ["--image", setup.image, "--", "/bin/sh", "-c", "exec 3<>/dev/ptmx && echo ptmx; ls /dev | tr '\\n' ' '"],
            environment: ["ENROOT_RESTRICT_DEV": "y"])
        #expect(result.status == 0, "\(result)")
        let devices = ["full", "null", "random", "shm", "tty", "urandom", "zero"].filter { access("/dev/" + $0, F_OK) == 0 }
        for name in devices + ["pts", "ptmx", "fd", "stdin"] {
            #expect(result.stdout.contains(" \(name) ") || result.stdout.hasPrefix("ptmx\n\(name) "), "\(name): \(result)")
        }
        #expect(result.stdout.hasPrefix("ptmx\n"), "\(result)")
        #expect(!result.stdout.contains("sda") && !result.stdout.contains("kmsg"), "\(result)")
    }

    /// Mounts the kernel refuses without privilege: the message says what to do.
    @Test func refusedMountsComeWithAHint() throws {
        guard let setup = try Self.setUp() else { return }
        try setup.box.mkdir("hostdir")
        let atime = try Self.run(setup, ["--image", setup.image, "--mount", setup.box.path + "/hostdir:/x:noatime", "--", "true"])
        #expect(atime.status == 71, "\(atime)")
        #expect(atime.stderr.hasSuffix("  hint: without privilege a bind mount keeps its source's atime behaviour: remove noatime\n"), "\(atime)")
        // Over the root, and a writable squashfs: refused before anything starts, as in an EDF.
        let overRoot = try Self.run(setup, ["--image", setup.image, "--mount", "umount:/", "--", "true"])
        #expect(overRoot.status == 65 && overRoot.stderr == "ns-enter: error: --mount umount:/ would mount over the container's root\n  hint: the image is the root: mount below it, e.g. /data\n", "\(overRoot)")
        let writableSquashfs = try Self.run(setup, ["--image", setup.image, "--mount", setup.image + ":/d:sqsh+rw", "--", "true"])
        #expect(writableSquashfs.status == 65 && writableSquashfs.stderr.hasSuffix("a squashfs mount is read-only; the flag rw is not possible\n  hint: remove rw\n"), "\(writableSquashfs)")
        // Flags that name one thing twice are refused before anything starts, as in an EDF.
        let twice = try Self.run(setup, ["--image", setup.image, "--mount", setup.box.path + "/hostdir:/x:private+shared", "--", "true"])
        #expect(
            twice.status == 65 && twice.stderr == "ns-enter: error: --mount \(setup.box.path)/hostdir:/x:private+shared: 'private' and 'shared' are two propagations\n  hint: keep one of them\n",
            "\(twice)")
        let inside = try Self.run(
            setup, ["--image", setup.image, "--mount", setup.box.path + "/hostdir:/x", "--mount", setup.box.path + "/hostdir:/x/deeper/y", "--", "true"])
        #expect(inside.status == 71, "\(inside)")
        #expect(inside.stderr.hasSuffix("  hint: the destination is inside a mount from the host, where nothing is created: create it on the host first\n"), "\(inside)")
        #expect(!FileManager.default.fileExists(atPath: setup.box.path + "/hostdir/deeper"))
    }

    /// A document that edf-expand would never write is refused with the key at fault.
    @Test func documentsAreChecked() throws {
        guard let setup = try Self.setUp() else { return }
        let good = try String(contentsOfFile: try Self.document(setup), encoding: .utf8)
        let cases: [(String, String, String)] = [
            ("\"schemaVersion\":1", "\"schemaVersion\":2", "key 'schemaVersion': version 2; this toolbox reads documents of version 1"),
            ("\"env\":{}", "\"env\":{\"A=B\":\"x\"}", "key 'env': \"A=B\" is not a variable name (empty, or with '=')"),
            ("\"entrypoint\":false", "\"entrypoint\":\"no\"", "not an environment document: "),
            ("\"mounts\":[]", "\"mounts\":[{\"source\":\"tmpfs\",\"destination\":\"/t\",\"type\":\"tmpfs\",\"options\":[\"ro\",\"rw\"]}]",
             "key 'mounts[0].options': 'ro' and 'rw' contradict each other"),
        ]
        for (from, to, message) in cases {
            #expect(good.contains(from), "\(from) in \(good)")
            let file = try setup.box.write("bad-\(UUID().uuidString).json", good.replacing(from, with: to))
            let result = try Self.run(setup, ["--environment", file, "--", "true"])
            #expect(result.status == 65, "\(result)")
            #expect(result.stderr.hasPrefix("ns-enter: error: \(file): \(message)"), "\(result)")
        }
    }

    /// A script without #! runs with /bin/sh, as execvp runs it.
    @Test func aScriptWithoutInterpreterLineRunsWithSh() throws {
        guard let setup = try Self.setUp() else { return }
        try setup.box.write("scripts/plain", "echo \"no interpreter line: $1\"\n")
        chmod(setup.box.path + "/scripts/plain", 0o755)
        let result = try Self.run(setup, ["--image", setup.image, "--mount", setup.box.path + "/scripts:/scripts:ro", "--", "/scripts/plain", "arg"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "no interpreter line: arg\n", "\(result)")
    }

    @Test func entrypointOnAndOff() throws {
        guard let setup = try Self.setUp() else { return }
        // An entrypoint as NGC's: it prepares the environment (and here a directory and a file
        // in the shared /tmp, and a daemon), says so, and runs its arguments.
        let script = "export FROM_ENTRY=yes; echo entry-ran; echo ran >> /tmp/entry-runs; sleep 5331 >/dev/null 2>&1 & cd /data; exec \"$@\""
        let entrypoint = ["/bin/sh", "-c", script, "entry"]
        let on = try Self.document(setup, entrypoint: true, writable: true, entrypointCommand: entrypoint, cmd: ["/bin/echo", "default-cmd"])
        // As Pyxis: run once for the container, with a stop command; the command then runs
        // directly with the environment and directory the entrypoint left, its output hidden.
        let ran = try Self.run(setup, ["--environment", on, "--", "/bin/sh", "-c", "echo $FROM_ENTRY $(pwd) $(cat /tmp/entry-runs)"])
        #expect(ran.status == 0 && ran.stdout == "yes /data ran\n" && ran.stderr.isEmpty, "\(ran)")
        // What it left running is stopped with the container.
        var left = ["x"]
        for _ in 0..<100 where !left.isEmpty {
            usleep(50_000)
            left = Self.sleeps(setup, "5331").map(String.init)
        }
        #expect(left.isEmpty, "the entrypoint's daemon outlived the container: \(left)")
        // The EDF's [env] and workdir stay the user's (as Pyxis keeps --container-env names and
        // --container-workdir over the entrypoint's).
        let kept = try Self.document(
            setup, env: ["FROM_ENTRY": "from-edf"], workdir: "/opt", entrypoint: true, writable: true, entrypointCommand: entrypoint,
            cmd: ["/bin/echo", "default-cmd"])
        let edfWins = try Self.run(setup, ["--environment", kept, "--", "/bin/sh", "-c", "echo $FROM_ENTRY $(pwd)"])
        #expect(edfWins.stdout == "from-edf /opt\n", "\(edfWins)")
        for pid in Self.sleeps(setup, "5331") { kill(pid, SIGKILL) }
        // com.pyxis.entrypoint_log shows its output (on stderr).
        let quiet = try Self.document(
            setup, entrypoint: true, writable: true, entrypointCommand: ["/bin/sh", "-c", "echo entry-ran; exec \"$@\"", "entry"],
            cmd: ["/bin/echo", "default-cmd"])
        let logged = try Self.run(setup, ["--environment", quiet, "--annotation", "com.pyxis.entrypoint_log=true", "--", "/bin/echo", "cmd"])
        #expect(logged.status == 0 && logged.stdout == "cmd\n" && logged.stderr == "entry-ran\n", "\(logged)")
        // Without a command, as docker run: the entrypoint with the image's Cmd.
        let noCommand = try Self.run(setup, ["--environment", quiet])
        #expect(noCommand.stdout == "entry-ran\ndefault-cmd\n", "\(noCommand)")
        for pid in Self.sleeps(setup, "5331") { kill(pid, SIGKILL) }
        // Tasks of one container: the entrypoint ran once, for the first.
        let name = "entry-once-\(UUID().uuidString.prefix(8))"
        let (creator, pid) = try Self.startShared(setup, name: name, ["--environment", on, "--name", name, "--", "/bin/sleep", "30"])
        let joined = try Self.run(setup, ["--join", pid, "--", "/bin/sh", "-c", "echo $FROM_ENTRY $(pwd) $(cat /tmp/entry-runs)"])
        #expect(joined.stdout == "yes /data ran\n", "\(joined)")
        creator.terminate()
        creator.waitUntilExit()
        // An entrypoint that does not run its arguments: a clear error, with what it printed.
        let echoing = try Self.document(setup, entrypoint: true, entrypointCommand: ["/bin/echo", "entry"], cmd: ["x"])
        let failed = try Self.run(setup, ["--environment", echoing, "--", "true"])
        #expect(failed.status == 126, "\(failed)")
        #expect(
            failed.stderr == "ns-enter: error: the image's entrypoint /bin/echo entry exited with status 0 before it ran its arguments; its output:\n  | entry /bin/sh -c kill -STOP $$; exit 0\n  hint: entrypoint = false in the EDF (ns-enter --no-entrypoint) runs the command without it\n",
            "\(failed)")
        let off = try Self.document(setup, entrypoint: false, entrypointCommand: ["/bin/echo", "entry"], cmd: ["/bin/echo", "cmd"])
        #expect(try Self.run(setup, ["--environment", off, "--", "echo", "direct"]).stdout == "direct\n")
        #expect(try Self.run(setup, ["--environment", off]).stdout == "cmd\n")
        let nothing = try Self.document(setup)
        let result = try Self.run(setup, ["--environment", nothing])
        #expect(result.status == 65, "\(result)")
        #expect(result.stderr == "ns-enter: error: no command to run: none was given and the image has no Cmd\n  hint: give the command after --, e.g. ns-enter --environment env.json -- bash\n")
    }

    /// Pyxis's PyTorch remap, on with com.pyxis.pytorch_remap_vars (off by default, as in the
    /// Container Engine): each task's RANK and LOCAL_RANK from SLURM_PROCID and SLURM_LOCALID.
    @Test func pyTorchRemapOnRequest() throws {
        guard let setup = try Self.setUp() else { return }
        let document = try Self.document(setup, imageEnv: ["PATH=/bin", "PYTORCH_VERSION=2.5.0"])
        let task = ["SLURM_PROCID": "3", "SLURM_LOCALID": "1"]
        let show = ["--", "/bin/sh", "-c", "echo ${RANK-unset} ${LOCAL_RANK-unset}"]
        let off = try Self.run(setup, ["--environment", document] + show, environment: task)
        #expect(off.stdout == "unset unset\n", "\(off)")
        let on = try Self.run(setup, ["--environment", document, "--annotation", "com.pyxis.pytorch_remap_vars=true"] + show, environment: task)
        #expect(on.stdout == "3 1\n", "\(on)")
        let noPyTorch = try Self.document(setup)
        let other = try Self.run(setup, ["--environment", noPyTorch, "--annotation", "com.pyxis.pytorch_remap_vars=true"] + show, environment: task)
        #expect(other.stdout == "unset unset\n", "\(other)")
    }

    @Test func everyMountType() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        try box.mkdir("shared")
        chown(box.path + "/shared", uid_t(setup.uid), gid_t(setup.gid))
        try box.write("readonly/file.txt", "read-only data\n")
        try box.write("single.txt", "one file\n")
        try box.mkdir("data-tree/sub")
        try box.write("data-tree/sub/inside.txt", "from a data image\n")
        let data = try Tools.run(absolute: "/usr/bin/mksquashfs", [box.path + "/data-tree", box.path + "/data.sqsh", "-quiet", "-noappend"], in: box.url)
        #expect(data.status == 0, "\(data)")
        let document = try Self.document(
            setup,
            mounts: [
                ["source": box.path + "/shared", "destination": "/new/shared", "type": "bind", "options": [String]()],
                ["source": box.path + "/readonly", "destination": "/data/ro", "type": "bind", "options": ["ro"]],
                ["source": box.path + "/single.txt", "destination": "/etc/single.txt", "type": "bind", "options": [String]()],
                ["source": "tmpfs", "destination": "/scratch", "type": "tmpfs", "options": ["size=1M"]],
                ["source": box.path + "/data.sqsh", "destination": "/opt/data", "type": "squashfs", "options": [String]()],
            ])
        let script = """
            echo written > /new/shared/out.txt && echo rw-ok
            touch /data/ro/x 2>/dev/null || echo ro-refused
            cat /data/ro/file.txt /etc/single.txt /opt/data/sub/inside.txt
            touch /opt/data/x 2>/dev/null || echo sqsh-refused
            df -k /scratch | tail -1 | awk '{print $2}' 2>/dev/null || df -k /scratch | tail -1
            echo > /scratch/file && echo tmpfs-ok
            """
        let result = try Self.run(setup, ["--environment", document, "--", "/bin/sh", "-c", script])
        #expect(result.status == 0, "\(result)")
        for expected in ["rw-ok", "ro-refused", "read-only data", "one file", "from a data image", "sqsh-refused", "tmpfs-ok", "1024"] {
            #expect(result.stdout.contains(expected), "\(expected): \(result)")
        }
        #expect((try? String(contentsOfFile: box.path + "/shared/out.txt", encoding: .utf8)) == "written\n")

        // The standalone flags give the same mounts.
        let flags = try Self.run(
            setup, ["--image", setup.image, "--mount", box.path + "/readonly:/r:ro", "--mount", "tmpfs:/t", "--mount", box.path + "/data.sqsh:/d:sqsh", "--", "/bin/sh", "-c", "cat /r/file.txt /d/sub/inside.txt; touch /t/x && echo t-ok"])
        #expect(flags.stdout == "read-only data\nfrom a data image\nt-ok\n", "\(flags)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    /// Source umount (Pyxis's x-detach): a later entry takes away what an earlier one (or the
    /// system) mounted; nothing mounted there is no error.
    @Test func umountTakesAMountAway() throws {
        guard let setup = try Self.setUp() else { return }
        let doc = try Self.document(
            setup,
            mounts: [
                ["source": "tmpfs", "destination": "/t", "type": "tmpfs", "options": []],
                ["source": "umount", "destination": "/t", "type": "detach", "options": []],
                ["source": "umount", "destination": "/etc/hostname", "type": "detach", "options": []],
                ["source": "umount", "destination": "/nothing/here", "type": "detach", "options": []],
            ])
        let result = try Self.run(
            setup, ["--environment", doc, "--", "/bin/sh", "-c", "grep -c -e ' /t ' -e ' /etc/hostname ' /proc/self/mounts; echo done"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "0\ndone\n", "\(result)")
        let flags = try Self.run(
            setup, ["--image", setup.image, "--mount", "tmpfs:/t", "--mount", "umount:/t", "--", "/bin/sh", "-c", "grep -c ' /t ' /proc/self/mounts"])
        #expect(flags.stdout == "0\n", "\(flags)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func readOnlyAndWritableRoot() throws {
        guard let setup = try Self.setUp() else { return }
        let readOnly = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "touch /data/new 2>&1; echo > /etc/passwd 2>&1; echo done"])
        #expect(readOnly.stdout.contains("Read-only file system"), "\(readOnly)")
        // As enroot: /tmp, /var/run and /var/lock are tmpfs mounts of their own, writable also then.
        let scratch = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "touch /tmp/a /var/run/b /var/lock/c && echo writable"])
        #expect(scratch.status == 0 && scratch.stdout == "writable\n", "\(scratch)")
        let writable = try Self.run(setup, ["--image", setup.image, "--writable", "--", "/bin/sh", "-c", "echo changed > /data/hello.txt && mkdir /newdir && cat /data/hello.txt"])
        #expect(writable.status == 0 && writable.stdout == "changed\n", "\(writable)")
        let after = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "cat /data/hello.txt; test -e /newdir || echo gone"])
        #expect(after.stdout == "hello from the image\ngone\n", "changes are discarded at exit: \(after)")
        // A directory made in the container is renamed into one of the image (as dpkg unpacks a
        // package), not copied after an EXDEV: the same inode before and after (busybox's mv
        // copies silently when rename fails).
        let rename = "mkdir /data/new.tmp && a=$(stat -c %i /data/new.tmp) && mv /data/new.tmp /data/new && b=$(stat -c %i /data/new) && [ \"$a\" = \"$b\" ] && echo renamed"
        for root in [[], ["--root"]] {
            let renamed = try Self.run(setup, ["--image", setup.image, "--writable"] + root + ["--", "/bin/sh", "-c", rename])
            #expect(renamed.status == 0 && renamed.stdout == "renamed\n", "\(root): \(renamed)")
        }
    }

    @Test func exitStatusesSignalsAndMissingCommands() throws {
        guard let setup = try Self.setUp() else { return }
        #expect(try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "exit 42"]).status == 42)
        let killed = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "kill -KILL $$"])
        #expect(killed.status == 9 + 128 || killed.status == 9, "\(killed)")
        let missing = try Self.run(setup, ["--image", setup.image, "--", "no-such-command"])
        #expect(missing.status == 127, "\(missing)")
        #expect(missing.stderr.hasPrefix("ns-enter: error: command 'no-such-command' not found in the container (PATH="), "\(missing)")
        let notExecutable = try Self.run(setup, ["--image", setup.image, "--", "/bin/not-executable"])
        #expect(notExecutable.status == 126, "\(notExecutable)")
        #expect(notExecutable.stderr == "ns-enter: error: cannot run /bin/not-executable in the container: Permission denied\n  hint: the file is not executable (chmod +x), or a mount with noexec holds it\n", "\(notExecutable)")
        // A low limit of open files (ulimit -n) still starts the container and its FUSE server.
        let fewFiles = try Tools.run(
            absolute: "/bin/sh",
            ["-c", "ulimit -n 16 && exec /usr/bin/setpriv --reuid=\(setup.uid) --regid=\(setup.gid) --clear-groups '\(Tools.path("ns-enter"))' --image '\(setup.image)' -- /bin/sh -c 'echo ok'"],
            in: setup.box.url)
        #expect(fewFiles.status == 0 && fewFiles.stdout == "ok\n", "\(fewFiles)")
        let directory = try Self.run(setup, ["--image", setup.image, "--", "/data"])
        #expect(directory.status == 126 && directory.stderr == "ns-enter: error: cannot run /data in the container: it is a directory\n", "\(directory)")
        let noInterpreter = try Self.run(setup, ["--image", setup.image, "--", "/bin/no-interpreter"])
        #expect(noInterpreter.status == 127, "\(noInterpreter)")
        #expect(
            noInterpreter.stderr == "ns-enter: error: cannot run /bin/no-interpreter in the container: its interpreter /nonexistent/interpreter is not in the image\n  hint: install the interpreter in the image, or change the script's #! line\n",
            "\(noInterpreter)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func setuidBinariesGiveNoPrivilege() throws {
        guard let setup = try Self.setUp() else { return }
        let result = try Self.run(setup, ["--image", setup.image, "--", "/bin/busybox-suid", "grep", "-E", "^(Uid|Gid):", "/proc/self/status"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "Uid:\t\(setup.uid)\t\(setup.uid)\t\(setup.uid)\t\(setup.uid)\nGid:\t\(setup.gid)\t\(setup.gid)\t\(setup.gid)\t\(setup.gid)\n", "\(result)")
        let mounts = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "grep ' / / ' /proc/self/mountinfo"])
        #expect(mounts.stdout.contains("nosuid") && mounts.stdout.contains("nodev"), "\(mounts)")
        // The command keeps no capability to pass on: neither ambient nor inheritable (both were
        // raised for the hooks), none effective.
        let capabilities = try Self.run(setup, ["--image", setup.image, "--", "grep", "-E", "^Cap(Inh|Eff|Amb):", "/proc/self/status"])
        #expect(capabilities.stdout == "CapInh:\t0000000000000000\nCapEff:\t0000000000000000\nCapAmb:\t0000000000000000\n", "\(capabilities)")
    }

    @Test func mountDestinationsCannotEscapeThroughSymlinks() throws {
        guard let setup = try Self.setUp() else { return }
        try setup.box.mkdir("src")
        try setup.box.write("src/f", "x\n")
        for destination in ["/escape-abs/sub", "/escape-rel/sub", "/escape-abs"] {
            let result = try Self.run(
                setup, ["--image", setup.image, "--mount", setup.box.path + "/src:" + destination, "--", "/bin/sh", "-c", "cat \(destination)/f"])
            #expect(result.status == 0, "\(destination): \(result)")
            #expect(!FileManager.default.fileExists(atPath: setup.escape), "\(destination) created \(setup.escape) on the host")
        }
        // Into the host's /dev, which the container binds: refused, nothing created there.
        let hostDev = "/dev/shm/" + (setup.escape.split(separator: "/").last.map(String.init) ?? "")
        let intoDev = try Self.run(setup, ["--image", setup.image, "--mount", setup.box.path + "/src:/escape-dev/sub", "--", "true"])
        #expect(intoDev.status == 71, "\(intoDev)")
        #expect(intoDev.stderr.contains("it is on a mount from the host"), "\(intoDev)")
        #expect(!FileManager.default.fileExists(atPath: hostDev), "created \(hostDev) on the host")
    }

    /// A saved document whose image was built again since (another size): refused, since its
    /// config and digest describe another file; and PWD is where the command starts.
    @Test func aDocumentOfAnotherImageIsRefused() throws {
        guard let setup = try Self.setUp() else { return }
        let document = try Self.document(setup)
        let text = try String(contentsOfFile: document, encoding: .utf8)
        #expect(text.contains("\"size\":0"))
        let stale = try setup.box.write("stale.json", text.replacingOccurrences(of: "\"size\":0", with: "\"size\":12345"))
        let refused = try Self.run(setup, ["--environment", stale, "--", "true"])
        #expect(refused.status == 65, "\(refused)")
        #expect(refused.stderr.contains("is not the image this document describes"), "\(refused)")
        let pwd = try Self.run(setup, ["--environment", document, "--workdir", "/data", "--", "/bin/sh", "-c", "echo $PWD"], environment: ["PWD": "/somewhere/on/the/host"])
        #expect(pwd.stdout == "/data\n", "\(pwd)")
    }

    @Test func joiningTasksRunAsTheFirstDid() throws {
        guard let setup = try Self.setUp() else { return }
        let document = try Self.document(setup, entrypoint: true, entrypointCommand: ["/bin/echo", "entry"], cmd: ["default"])
        let name = "entry-\(UUID().uuidString.prefix(8))"
        let (creator, pid) = try Self.startShared(
            setup, name: name, ["--environment", document, "--no-entrypoint", "--name", name, "--", "/bin/sleep", "2"])
        // The creator turned the entrypoint off: joiners do as it did.
        let joined = try Self.run(setup, ["--join", pid, "--", "/bin/echo", "direct"])
        #expect(joined.stdout == "direct\n", "\(joined)")
        // The name with another image: refused, not run in the wrong container.
        let other = setup.box.path + "/other.sqsh"
        try FileManager.default.copyItem(atPath: setup.image, toPath: other)
        let wrong = try Self.run(setup, ["--image", other, "--name", name, "--", "/bin/echo", "wrong"])
        #expect(wrong.status == 65 && wrong.stdout.isEmpty, "\(wrong)")
        #expect(wrong.stderr == "ns-enter: error: --name \(name): the container of that name runs \(setup.image), not \(other)\n  hint: give another --name (%j.%s.%N names one container per job step and node), or the same image\n", "\(wrong)")
        // Another request for the same image (not the creator's document: decoded, then joined),
        // and a document that does not decode (refused, as it would be for a creator).
        let sameImage = try Self.run(setup, ["--image", setup.image, "--name", name, "--", "/bin/echo", "same"])
        #expect(sameImage.status == 0 && sameImage.stdout == "same\n", "\(sameImage)")
        // The image through a link is the same image; a missing one is said to be missing.
        try FileManager.default.createSymbolicLink(atPath: setup.box.path + "/link-\(name).sqsh", withDestinationPath: setup.image)
        let linked = try Self.run(setup, ["--image", setup.box.path + "/link-\(name).sqsh", "--name", name, "--", "/bin/echo", "linked"])
        #expect(linked.status == 0 && linked.stdout == "linked\n", "\(linked)")
        let nowhere = try Self.run(setup, ["--image", setup.box.path + "/nowhere.sqsh", "--name", name, "--", "true"])
        #expect(nowhere.status == 66 && nowhere.stderr.hasPrefix("ns-enter: error: key 'image': cannot open the image \(setup.box.path)/nowhere.sqsh: No such file or directory"), "\(nowhere)")
        // What only a creator applies is said to be ignored.
        let options = try Self.run(setup, ["--image", setup.image, "--name", name, "--root", "--mount", "/tmp:/zz", "--", "/bin/echo", "options"])
        #expect(options.status == 0 && options.stdout == "options\n", "\(options)")
        #expect(options.stderr == "ns-enter: warning: --mount, --root ignored: joining the running container \(name), which its first task built\n  hint: a joining task runs as the first one did; --env and --workdir apply\n", "\(options)")
        // An empty document is no document: decoded, and refused.
        let emptyDocument = try setup.box.write("empty-\(name).json", "")
        let empty = try Self.run(setup, ["--environment", emptyDocument, "--image", setup.image, "--name", name, "--", "true"])
        #expect(empty.status == 65, "\(empty)")
        let long = try Self.run(setup, ["--image", setup.image, "--name", String(repeating: "n", count: 300), "--", "true"])
        #expect(long.status == 65 && long.stderr.hasPrefix("ns-enter: error: --name is 300 bytes long; at most 200"), "\(long)")
        let broken = try setup.box.write("broken-\(name).json", "{\"schemaVersion\": 1, \"image\": 7}")
        let refused = try Self.run(setup, ["--environment", broken, "--name", name, "--", "/bin/echo", "broken"])
        #expect(refused.status == 65 && refused.stdout.isEmpty, "\(refused)")
        creator.waitUntilExit()
        #expect(Self.waitForNoLeftovers(setup).isEmpty)

        // Two tasks at once: the entrypoint ran once, for the container; both got what it set.
        let second = "entry2-\(UUID().uuidString.prefix(8))"
        let preparing = try Self.document(
            setup, entrypoint: true, entrypointCommand: ["/bin/sh", "-c", "export FROM_ENTRY=entry; exec \"$@\"", "entry"], cmd: ["default"])
        let tasks = (0..<2).map { _ in Process() }
        for (index, task) in tasks.enumerated() {
            task.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            task.arguments = [
                "--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path("ns-enter"), "--environment", preparing, "--name", second,
                "--", "/bin/sh", "-c", "echo $FROM_ENTRY task\(index)",
            ]
            let out = setup.box.url.appendingPathComponent("entry-\(index).out")
            _ = FileManager.default.createFile(atPath: out.path, contents: nil)
            task.standardOutput = try FileHandle(forWritingTo: out)
            try task.run()
        }
        for task in tasks { task.waitUntilExit() }
        for index in 0..<2 {
            let output = try String(contentsOfFile: setup.box.path + "/entry-\(index).out", encoding: .utf8)
            #expect(output == "entry task\(index)\n", "task \(index): \(output)")
        }
        // Once a name's container has ended, nothing of it stays in the records (no NAME.lock
        // per job step, for ever); a failed start leaves nothing either.
        _ = Self.waitForNoLeftovers(setup)
        let failed = "failed-\(UUID().uuidString.prefix(8))"
        let bad = try Self.run(setup, ["--image", setup.box.path + "/missing.sqsh", "--name", failed, "--", "true"])
        #expect(bad.status == 66, "\(bad)")
        let records = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp/toolbox-\(setup.uid)/containers")) ?? []
        #expect(!records.contains { $0.hasPrefix(name) || $0.hasPrefix(second) || $0.hasPrefix(failed) }, "\(records)")
    }

    /// What img-squash prints without an environment document (for layer files; for img-pull's
    /// output alone, with `squash` added) and the image's FILE.json run the image with the EDF's
    /// defaults: each stage can be run alone on a saved document.
    @Test func squashResultsAsDocuments() throws {
        guard let setup = try Self.setUp() else { return }
        let squashed = try setup.box.run("img-squash", ["-q", "--force", "-o", setup.image, setup.box.path + "/layer.tar"])
        #expect(squashed.status == 0, "\(squashed)")
        let alone = try setup.box.write("squashed.json", squashed.stdout)
        // img-pull's output with img-squash's result added (the pull's own keys beside it).
        let squash = try #require(try JSONSerialization.jsonObject(with: Data(squashed.stdout.utf8)) as? [String: Any])
        let pulled: [String: Any] = ["reference": "oci:/layout:x", "registry": "local", "squash": squash]
        let nested = try setup.box.write("pulled.json", String(decoding: try JSONSerialization.data(withJSONObject: pulled), as: UTF8.self))
        for document in [alone, setup.image + ".json", nested] {
            let result = try Self.run(setup, ["--environment", document, "--", "/bin/sh", "-c", "cat /data/hello.txt; pwd"])
            #expect(result.status == 0 && result.stdout.hasSuffix("\n/\n"), "\(document): \(result)")
        }
        let broken = try setup.box.write("broken.json", #"{"squash": {"path": 3}}"#)
        let bad = try Self.run(setup, ["--environment", broken, "--", "true"])
        #expect(bad.status == 65, "\(bad)")
        #expect(bad.stderr == "ns-enter: error: \(broken): not img-squash's result: wrong type at 'squash.path'\n  hint: give the JSON that img-squash (or edf-expand) writes, unchanged\n", "\(bad)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func badImagesAndMissingSources() throws {
        guard let setup = try Self.setUp() else { return }
        let notSquashfs = try setup.box.write("not.sqsh", "this is not an image\n")
        let bad = try Self.run(setup, ["--image", notSquashfs, "--", "true"])
        #expect(bad.status == 65, "\(bad)")
        #expect(bad.stderr == "ns-enter: error: key 'image': \(notSquashfs) is not a squashfs image\n  hint: images are made by img-squash (or mksquashfs); check that the path names the .sqsh file\n")
        // An image cut short (an interrupted copy): said up front, not a "Bus error" of the
        // first program that reads past its end.
        let whole = try Data(contentsOf: URL(fileURLWithPath: setup.image))
        let cut = setup.box.path + "/cut.sqsh"
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: cut))
        let truncated = try Self.run(setup, ["--image", cut, "--", "true"])
        #expect(truncated.status == 65, "\(truncated)")
        #expect(truncated.stderr.hasPrefix("ns-enter: error: key 'image': \(cut) is truncated: the file has \(whole.count / 2) bytes of the "), "\(truncated)")
        #expect(truncated.stderr.hasSuffix(" its squashfs superblock names\n  hint: a copy or a build of it was cut short: copy it again, or rebuild it (img-squash --force)\n"), "\(truncated)")
        // A damaged image (the pointer to its id table garbled: squashfuse then answers "no such
        // file" even for the root): said as such, not "command not found".
        var garbled = [UInt8](whole)
        let idTable = (48..<56).reversed().reduce(0) { $0 << 8 | Int(garbled[$1]) }
        for index in idTable..<idTable + 8 { garbled[index] ^= 0xa5 }
        let damaged = setup.box.path + "/damaged.sqsh"
        try Data(garbled).write(to: URL(fileURLWithPath: damaged))
        let unreadable = try Self.run(setup, ["--image", damaged, "--", "true"])
        #expect(unreadable.status == 65, "\(unreadable)")
        #expect(unreadable.stderr.hasPrefix("ns-enter: error: key 'image': cannot read the root directory of \(damaged): "), "\(unreadable)")
        #expect(unreadable.stderr.hasSuffix("\n  hint: the image \(damaged) may be damaged (reading it failed): `unsquashfs -l \(damaged)` checks it; build it again (img-squash --force, or remove it from the image store) or copy it again\n"), "\(unreadable)")
        let missing = try Self.run(setup, ["--image", setup.box.path + "/missing.sqsh", "--", "true"])
        #expect(missing.status == 66, "\(missing)")
        #expect(missing.stderr.hasPrefix("ns-enter: error: key 'image': cannot open the image \(setup.box.path)/missing.sqsh: No such file or directory\n"), "\(missing)")
        let document = try Self.document(setup, mounts: [["source": "/no/such/source", "destination": "/x", "type": "bind", "options": [String]()]])
        let source = try Self.run(setup, ["--environment", document, "--", "true"])
        #expect(source.status == 66, "\(source)")
        #expect(source.stderr.contains("key 'mounts[0]': mount source /no/such/source does not exist: No such file or directory"), "\(source)")
        let usage = try Self.run(setup, ["--", "true"])
        #expect(usage.status == 64, "\(usage)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    /// An image whose /sys leads to its root, or whose /dev leads to /tmp: a system mount would
    /// cover the image or another one (the command was "not found", or /dev/null a plain file).
    @Test func systemMountsThatWouldCoverTheImageOrEachOther() throws {
        guard let setup = try Self.setUp() else { return }
        for (name, link, target, mount, expected) in [
            ("sys", "sys", "../../..", "/sys", "in the image it leads to the container's root"),
            ("dev", "dev", "tmp", "/tmp", "in the image it leads to /tmp, where /dev is mounted"),
        ] {
            let layer = setup.box.path + "/\(name).tar"
            let made = try Tools.run(
                absolute: "/usr/bin/python3",
                ["-c", "import sys, tarfile; t = tarfile.TarInfo(sys.argv[2]); t.type = tarfile.SYMTYPE; t.linkname = sys.argv[3]; tarfile.open(sys.argv[1], 'w').addfile(t)", layer, link, target],
                in: setup.box.url)
            #expect(made.status == 0, "\(made)")
            let image = setup.box.path + "/\(name).sqsh"
            let squashed = try setup.box.run("img-squash", ["-q", "-o", image, setup.box.path + "/layer.tar", layer])
            #expect(squashed.status == 0, "\(squashed)")
            let result = try Self.run(setup, ["--image", image, "--", "true"])
            #expect(result.status == 71, "\(result)")
            #expect(
                result.stderr == "ns-enter: error: cannot mount \(mount): \(expected)\n"
                    + "  hint: a symbolic link of the image (\(mount) or one of its parents) points where no system directory can be; fix the image\n", "\(result)")
        }
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func noUserNamespacesAllowed() throws {
        guard let setup = try Self.setUp() else { return }
        // A user namespace in which no further one may be made (the limit is per namespace).
        try setup.box.mkdir("run")
        chown(setup.box.path + "/run", uid_t(setup.uid), gid_t(setup.gid))
        let result = try Tools.run(
            absolute: "/usr/bin/setpriv",
            ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", "/usr/bin/unshare", "-U", "-r", "/bin/sh", "-c",
             "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" --image \"$1\" -- true", Tools.path("ns-enter"), setup.image],
            environment: ["TMPDIR": setup.box.path + "/run"], in: setup.box.url)
        #expect(result.status == 69, "\(result)")
        #expect(result.stderr.hasPrefix("ns-enter: error: cannot create a user namespace: No space left on device (user.max_user_namespaces is 0)\n  hint: unprivileged user namespaces must be allowed: sysctl user.max_user_namespaces"), "\(result)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func noDevFuse() throws {
        guard let setup = try Self.setUp() else { return }
        // A mount namespace whose /dev has no fuse device (root sets it up, then becomes the user).
        let script = """
            mount -t tmpfs none /dev && touch /dev/null && mount --bind /proc/1/root/dev/null /dev/null 2>/dev/null || mount --bind "$2" /dev/null
            exec /usr/bin/setpriv --reuid=$3 --regid=$4 --clear-groups "$0" --image "$1" -- true
            """
        let result = try Tools.run(
            absolute: "/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script, Tools.path("ns-enter"), setup.image, "/dev/null", "\(setup.uid)", "\(setup.gid)"],
            in: setup.box.url)
        #expect(result.status == 69, "\(result)")
        #expect(result.stderr == "ns-enter: error: no /dev/fuse on this machine: No such file or directory\n  hint: load the fuse kernel module (modprobe fuse) or ask the site to provide /dev/fuse\n", "\(result)")
    }

    @Test func noSquashFUSELibrary() throws {
        guard let setup = try Self.setUp() else { return }
        // ns-enter does not link libsquashfuse: its FUSE server loads it. A mount namespace in
        // which the library is an empty file (root sets it up, then becomes the user).
        let script = """
            lib=$(/sbin/ldconfig -p | awk '$1 == "libsquashfuse_ll.so.0" { print $NF; exit }')
            [ -n "$lib" ] || { echo "no libsquashfuse_ll.so.0 in the linker cache" >&2; exit 99; }
            mount --bind /dev/null "$(readlink -f "$lib")" || exit 98
            exec /usr/bin/setpriv --reuid=$2 --regid=$3 --clear-groups "$0" --image "$1" -- true
            """
        let result = try Tools.run(
            absolute: "/usr/bin/unshare",
            ["-m", "--propagation", "private", "/bin/sh", "-c", script, Tools.path("ns-enter"), setup.image, "\(setup.uid)", "\(setup.gid)"],
            in: setup.box.url)
        #expect(result.status == 69, "\(result)")
        #expect(
            result.stderr == "ns-enter: error: cannot serve \(setup.image) with FUSE: the FUSE server cannot load libsquashfuse_ll.so.0 (or libfuse3.so.3)\n  hint: install squashfuse's library (Debian: apt-get install libsquashfuse0 libfuse3-3)\n",
            "\(result)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func aKilledFUSEServerFailsTheCommandAndLeavesNothing() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path("ns-enter"), "--image", setup.image, "--", "/bin/sh", "-c",
                             // Names never looked up before reach the server (cached pages would not).
                             "n=0; while :; do n=$((n+1)); case \"$(ls /data/none-$n 2>&1)\" in *connected*) exit 3;; esac; sleep 0.05; done"]
        process.standardOutput = FileHandle.nullDevice
        let errors = box.url.appendingPathComponent("killed.err")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        var server: Int32?
        for _ in 0..<100 where server == nil {
            usleep(50_000)
            server = Self.fuseServer(setup, marker: setup.image)
        }
        let pid = try #require(server, "no FUSE server found")
        usleep(200_000)
        kill(pid, SIGKILL)
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        #expect(!process.isRunning, "the command hangs after its FUSE server was killed")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        #expect(process.terminationStatus == 3, "the command saw 'Transport endpoint is not connected'")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)

        // A task that joins a named container whose server is gone is told so (not "command not
        // found").
        let name = "lost-\(UUID().uuidString.prefix(8))"
        // The first task runs the host's busybox, bound in: it keeps the container while the
        // image's server is gone (a program of the image would die of SIGBUS at its next page).
        let (creator, _) = try Self.startShared(
            setup, name: name, ["--image", setup.image, "--name", name, "--mount", "/bin/busybox:/opt/host/busybox:ro", "--", "/opt/host/busybox", "sleep", "30"])
        for _ in 0..<200 {
            let line = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(creator.processIdentifier)/cmdline"))) ?? Data()
            if line.starts(with: Data("/opt/host/busybox".utf8)) { break }
            usleep(25_000)
        }
        let shared = try #require(Self.fuseServer(setup, marker: name))
        kill(shared, SIGKILL)
        // Until it has exited (a zombie has closed its /dev/fuse: the connection is gone).
        for _ in 0..<100 {
            let state = (try? String(contentsOfFile: "/proc/\(shared)/status", encoding: .utf8))?.split(separator: "\n").first { $0.hasPrefix("State:") }
            if state == nil || state?.contains("Z") == true { break }
            usleep(50_000)
        }
        let joined = try Self.run(setup, ["--image", setup.image, "--name", name, "--", "/bin/cat", "/data/hello.txt"])
        #expect(joined.status == 71, "\(joined)")
        #expect(joined.stderr.hasPrefix("ns-enter: error: cannot read /bin/cat in the container: Transport endpoint is not connected\n  hint: the container's image server (ns-enter-fuse) is gone"), "\(joined)")
        creator.terminate()
        creator.waitUntilExit()
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    /// Processes of the test user whose command line is `sleep SECONDS`.
    static func sleeps(_ setup: Setup, _ seconds: String) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { name in
            guard let pid = Int32(name), let line = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(name)/cmdline")),
                line == Data("sleep\u{0}\(seconds)\u{0}".utf8)
            else { return nil }
            var info = stat()
            return stat("/proc/\(name)", &info) == 0 && Int(info.st_uid) == setup.uid ? pid : nil
        }
    }

    /// A task killed outright (SIGKILL: no chance to clean up) while its hooks run: the hook that
    /// runs and the service an earlier hook started are stopped all the same, and with them the
    /// container goes (the guard that ns-enter starts with the hooks).
    @Test func aTaskKilledWhileItsHooksRunLeavesNothingRunning() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        try box.write("guard-config/hooks.d/10-service.sh", "#!/bin/sh\nsetsid sleep 4321 </dev/null >/dev/null 2>&1 &\necho $! >> \"$TOOLBOX_HOOK_PIDS\"\n# in its own session before this hook's group is stopped\nsleep 0.5\n")
        try box.write("guard-config/hooks.d/20-slow.sh", "#!/bin/sh\nexec sleep 4322\n")
        chmod(box.path + "/guard-config/hooks.d/10-service.sh", 0o755)
        chmod(box.path + "/guard-config/hooks.d/20-slow.sh", 0o755)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path("ns-enter"), "--image", setup.image, "--", "true"]
        try box.mkdir("guard-tmp")
        chown(box.path + "/guard-tmp", uid_t(setup.uid), gid_t(setup.gid))
        process.environment = ["ENROOT_CONFIG_PATH": box.path + "/guard-config", "PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": box.path + "/guard-tmp"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var running = false
        for _ in 0..<100 where !running {
            usleep(50_000)
            running = !Self.sleeps(setup, "4322").isEmpty && !Self.sleeps(setup, "4321").isEmpty
        }
        #expect(running, "the hooks did not start")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        var left = ["x"]
        for _ in 0..<100 where !left.isEmpty {
            usleep(50_000)
            left = (Self.sleeps(setup, "4321") + Self.sleeps(setup, "4322")).map(String.init)
        }
        #expect(left.isEmpty, "the service or the hook outlived the killed task: \(left)")
        for pid in Self.sleeps(setup, "4321") + Self.sleeps(setup, "4322") { kill(pid, SIGKILL) }
        // hook-run's scratch directory goes too (the guard removes it).
        var scratch = ["x"]
        for _ in 0..<100 where !scratch.isEmpty {
            usleep(50_000)
            scratch = (try? FileManager.default.contentsOfDirectory(atPath: box.path + "/guard-tmp"))?.filter { $0.hasPrefix("hook-run.") } ?? []
        }
        #expect(scratch.isEmpty, "left in TMPDIR: \(scratch)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    /// A service's whole process group goes with the container: what it forked (also after the
    /// service itself exited) and a service that ignores SIGTERM. A service that fails to start
    /// takes what it forked with it.
    @Test func servicesAreStoppedWithWhatTheyForked() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        try box.write("svc-config/hooks.d/10-service.sh", """
            #!/bin/sh
            toolbox-hook service -- /bin/sh -c 'sleep 4331 & trap "" TERM; while :; do sleep 4332; done' >/dev/null
            toolbox-hook service -- /bin/sh -c 'sleep 4333 & sleep 0.2' >/dev/null
            sleep 0.5

            """)
        chmod(box.path + "/svc-config/hooks.d/10-service.sh", 0o755)
        let environment = ["ENROOT_CONFIG_PATH": box.path + "/svc-config"]
        let run = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "sleep 0.3; echo ran"], environment: environment)
        #expect(run.status == 0 && run.stdout == "ran\n", "\(run)")
        var left = ["x"]
        for _ in 0..<100 where !left.isEmpty {
            usleep(50_000)
            left = (Self.sleeps(setup, "4331") + Self.sleeps(setup, "4332") + Self.sleeps(setup, "4333")).map(String.init)
        }
        #expect(left.isEmpty, "left running after the container: \(left)")
        for pid in Self.sleeps(setup, "4331") + Self.sleeps(setup, "4332") + Self.sleeps(setup, "4333") { kill(pid, SIGKILL) }

        try box.write("svc-config/hooks.d/10-service.sh", "#!/bin/sh\ntoolbox-hook service -- /bin/sh -c 'sleep 4334 & exit 0' || exit 1\n")
        chmod(box.path + "/svc-config/hooks.d/10-service.sh", 0o755)
        let failed = try Self.run(setup, ["--image", setup.image, "--", "true"], environment: environment)
        #expect(failed.status != 0 && failed.stderr.contains("exited right after it started"), "\(failed)")
        var forked = ["x"]
        for _ in 0..<100 where !forked.isEmpty {
            usleep(50_000)
            forked = Self.sleeps(setup, "4334").map(String.init)
        }
        #expect(forked.isEmpty, "a failed service's child runs on: \(forked)")
        for pid in Self.sleeps(setup, "4334") { kill(pid, SIGKILL) }
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    /// Hooks written for enroot run unchanged: enroot's common.sh functions are there through
    /// ENROOT_LIBRARY_PATH, an ENROOT_ setting that says no is unset, the fstab lines enroot-mount
    /// takes (a field of options in place of the target, remount, a propagation alone, nofail
    /// lines that fail with a warning, lines of another pass left out) are taken.
    @Test func enrootStyleHooksRunUnchanged() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        try box.mkdir("hooksrc/pmix")
        chown(box.path + "/hooksrc", uid_t(setup.uid), gid_t(setup.gid))
        chown(box.path + "/hooksrc/pmix", uid_t(setup.uid), gid_t(setup.gid))
        try box.write("config/hooks.d/10-enroot.sh", """
            #!/bin/bash
            set -eu
            source "${ENROOT_LIBRARY_PATH}/common.sh"
            common::checkcmd grep
            readonly pwent=$(common::getpwent)
            [ -n "${pwent}" ] || common::err "no passwd entry"
            echo "USER_FROM_HOOK=${pwent%%:*}" >> "${ENROOT_ENVIRON}"
            echo "MOUNT_HOME=${ENROOT_MOUNT_HOME-unset} ${ENROOT_REMAP_ROOT-user} ${ENROOT_ROOTFS_WRITABLE-ro}" >> "${ENROOT_ENVIRON}"
            printf '%s\n' "\(box.path)/hooksrc/pmix x-create=dir,bind,rw,nosuid,nodev,private,nofail" \
                "\(box.path)/hooksrc/pmix /opt/ro x-create=dir,bind" "none /opt/ro none bind,remount,ro" "none /opt/ro none rslave" \
                "/nonexistent/src /opt/missing none x-create=dir,bind,nofail" "/nonexistent/quiet /opt/quiet none bind,nofail,silent" \
                "tmpfs /opt/other tmpfs x-create=dir 0 -1" "/etc/hostname /opt/t/g none x-create=file,bind" >> "${ENROOT_MOUNTS}"
            # A tmpfs one enroot-mount call makes, mount points made in it by the next ones.
            echo "tmpfs /opt/t tmpfs x-create=dir" | enroot-mount --root "${ENROOT_ROOTFS}" -
            echo "/etc/hostname /opt/t/f none x-create=file,bind" | enroot-mount --root "${ENROOT_ROOTFS}" -
            """)
        chmod(box.path + "/config/hooks.d/10-enroot.sh", 0o755)
        // A hook without a #! line is a shell script, as bash takes it.
        try box.write("config/hooks.d/20-plain.sh", "echo \"PLAIN=yes\" >> \"$ENROOT_ENVIRON\"\n")
        chmod(box.path + "/config/hooks.d/20-plain.sh", 0o755)
        // Only *.sh files are hooks, as for enroot: a renamed hook is off.
        for name in ["20-off.sh.disabled", "README"] {
            try box.write("config/hooks.d/" + name, "#!/bin/sh\necho 'must not run' >&2\nexit 1\n")
            chmod(box.path + "/config/hooks.d/" + name, 0o755)
        }
        let result = try Self.run(
            setup,
            [
                "--image", setup.image, "--", "/bin/sh", "-c",
                "echo $USER_FROM_HOOK $MOUNT_HOME $PLAIN; test -d \(box.path)/hooksrc/pmix && echo pmix; touch /opt/ro/x 2>/dev/null || echo read-only; test -e /opt/other || echo no-other; test -e /opt/t/f && test -e /opt/t/g && echo tmpfs",
            ],
            environment: ["ENROOT_CONFIG_PATH": box.path + "/config", "ENROOT_MOUNT_HOME": "n"])
        #expect(result.status == 0, "\(result)")
        let user = String(cString: getpwuid(uid_t(setup.uid))!.pointee.pw_name)
        #expect(result.stdout == "\(user) unset user ro yes\npmix\nread-only\nno-other\ntmpfs\n", "\(result)")
        // As enroot tells its hooks of --root and --rw.
        let asRoot = try Self.run(
            setup, ["--image", setup.image, "--root", "--writable", "--", "/bin/sh", "-c", "echo $MOUNT_HOME"],
            environment: ["ENROOT_CONFIG_PATH": box.path + "/config", "ENROOT_REMAP_ROOT": "no"])
        #expect(asRoot.status == 0 && asRoot.stdout == "unset y y\n", "\(asRoot)")
        #expect(result.stderr.contains("ns-enter: warning: ENROOT_MOUNTS:5: the mount source /nonexistent/src does not exist on the host; skipped (nofail)"), "\(result)")
        #expect(!result.stderr.contains("/nonexistent/quiet"), "\(result)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    /// An image without its config beside it, as enroot imports one: its Env is in the image's
    /// /etc/environment, which enroot reads; so does ns-enter (the EDF's [env] still wins).
    @Test func anImageWithoutItsConfigTakesEtcEnvironment() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        let script = "import io, tarfile\nt = tarfile.open('\(box.path)/etc.tar', 'w')\n"
            + "data = b'# enroot import\\nexport FROM_ETC=\"one two\"\\nPATH=/bin:/usr/bin\\nBOTH=etc\\n1BAD=x\\n'\n"
            + "i = tarfile.TarInfo('etc/environment'); i.size = len(data); t.addfile(i, io.BytesIO(data)); t.close()\n"
        let made = try Tools.run(absolute: "/usr/bin/python3", ["-c", script], in: box.url)
        try #require(made.status == 0, "\(made)")
        let squashed = try box.run("img-squash", ["-q", "-o", box.path + "/enroot-style.sqsh", box.path + "/layer.tar", box.path + "/etc.tar"])
        try #require(squashed.status == 0, "\(squashed)")
        chmod(box.path + "/enroot-style.sqsh", 0o644)
        // As enroot import leaves it: the squashfs file alone, no IMAGE.json beside it.
        try? FileManager.default.removeItem(atPath: box.path + "/enroot-style.sqsh.json")
        var image = setup
        image.image = box.path + "/enroot-style.sqsh"
        let result = try Self.run(image, ["--image", image.image, "--env", "BOTH=edf", "--", "/bin/sh", "-c", "echo \"$FROM_ETC|$BOTH|$PATH\""])
        #expect(result.status == 0 && result.stdout == "one two|edf|/bin:/usr/bin\n", "\(result)")
    }

    @Test func hooksInjectFilesAndVariablesAndFailClearly() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        let hooks = box.path + "/config/hooks.d"
        try box.write("config/hooks.d/20-inject.sh", """
            #!/bin/sh
            # An enroot-style hook: a file bind-mounted in, a variable added, an annotation read.
            [ "$OCI_ANNOTATION_com__example__inject__enabled" = "true" ] || exit 0
            echo "injected by the hook" > "$HOOK_SOURCE"
            echo "$HOOK_SOURCE /opt/injected.txt none x-create=file,bind,ro" >> "$ENROOT_MOUNTS"
            echo "INJECTED=yes" >> "$ENROOT_ENVIRON"
            echo "the hook saw FROM_IMAGE=$(grep ^FROM_IMAGE= "$ENROOT_ENVIRON")" >&2
            # As CSCS's DCGM hook does: mount now, through enroot-mount (hook-run provides it).
            echo "piped through enroot-mount" > "$HOOK_SOURCE.piped"
            echo "$HOOK_SOURCE.piped /opt/piped.txt none x-create=file,bind,ro,nosuid,nodev,private" | enroot-mount --root "$ENROOT_ROOTFS" -
            """)
        chmod(hooks + "/20-inject.sh", 0o755)
        try box.write("config/hooks.d/10-not-executable.sh", "#!/bin/sh\nexit 1\n")
        try box.mkdir("hooksrc")
        chown(box.path + "/hooksrc", uid_t(setup.uid), gid_t(setup.gid))
        let environment = ["ENROOT_CONFIG_PATH": box.path + "/config", "HOOK_SOURCE": box.path + "/hooksrc/file"]
        let document = try Self.document(setup, annotations: ["com.example.inject.enabled": "true"])
        let result = try Self.run(
            setup, ["--environment", document, "--", "/bin/sh", "-c", "cat /opt/injected.txt; echo $INJECTED; cat /opt/piped.txt"],
            environment: environment)
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "injected by the hook\nyes\npiped through enroot-mount\n", "\(result)")
        #expect(result.stderr.contains("the hook saw FROM_IMAGE=FROM_IMAGE=image"), "\(result)")
        // Annotation off: the hook does nothing.
        let off = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "test -e /opt/injected.txt || echo absent; echo ${INJECTED-unset}"], environment: environment)
        #expect(off.stdout == "absent\nunset\n", "\(off)")

        // hook-run alone: what the hooks asked for, as JSON.
        try box.mkdir("rootdir")
        let annotations = try box.write("annotations.json", #"{"com.example.inject.enabled": "true"}"#)
        let alone = try Self.run(setup, ["--rootfs", box.path + "/rootdir", "--annotations", annotations], tool: "hook-run", environment: environment)
        #expect(alone.status == 0, "\(alone)")
        let report = try box.json(alone)
        let mounts = try #require(report["mounts"] as? [[String: Any]])
        #expect(mounts.count == 2 && mounts[0]["target"] as? String == "/opt/injected.txt" && mounts[0]["performed"] as? Bool == false, "\(alone)")
        #expect(mounts.count == 2 && mounts[1]["target"] as? String == "/opt/piped.txt", "enroot-mount's lines are reported: \(alone)")
        let env = try #require(report["env"] as? [[String: String]])
        #expect(env == [["name": "INJECTED", "value": "yes"]], "\(alone)")

        // A failing hook stops the start with its status and its messages.
        try box.write("config/hooks.d/30-fail.sh", "#!/bin/sh\necho 'the GPU is on fire' >&2\nexit 3\n")
        chmod(hooks + "/30-fail.sh", 0o755)
        let failed = try Self.run(setup, ["--image", setup.image, "--", "true"], environment: environment)
        #expect(failed.status == 78, "\(failed)")
        #expect(failed.stderr.hasSuffix("the GPU is on fire\nns-enter: error: hook \(hooks)/30-fail.sh exited with status 3\n  hint: its messages are above\n"), "\(failed)")
        unlink(hooks + "/30-fail.sh")

        // A hook that hangs is killed after the timeout.
        try box.write("config/hooks.d/40-hang.sh", "#!/bin/sh\nsleep 600\n")
        chmod(hooks + "/40-hang.sh", 0o755)
        let started = Date()
        let hung = try Self.run(setup, ["--image", setup.image, "--hook-timeout", "1", "--", "true"], environment: environment)
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(hung.status == 78, "\(hung)")
        #expect(hung.stderr.contains("ns-enter: error: hook \(hooks)/40-hang.sh did not finish within 1 s and was killed"), "\(hung)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
    }

    @Test func tasksShareOneContainerPerName() throws {
        guard let setup = try Self.setUp() else { return }
        // The FUSE servers of the tests before may still be ending: they are not this test's.
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
        let name = "step-\(UUID().uuidString.prefix(8))"
        let document = try Self.document(setup, writable: true)
        // Four tasks at once: one creates, three join; they see each other's files in /tmp.
        var tasks: [Process] = []
        for index in 0..<4 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path("ns-enter"), "--environment", document, "--name", name, "--", "/bin/sh", "-c",
                                 "touch /tmp/task-\(index); n=0; while [ $(ls /tmp | grep -c task-) -lt 4 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; ls /tmp | grep -c task-; echo TASK=$TASK; sleep 0.5"]
            process.environment = ["PATH": "/usr/bin:/bin", "TASK": "\(index)"]
            let out = setup.box.url.appendingPathComponent("task-\(index).out")
            _ = FileManager.default.createFile(atPath: out.path, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = process.standardOutput
            try process.run()
            tasks.append(process)
        }
        // While the tasks run, there is exactly one FUSE server (and one holder).
        var most: [Int32] = []
        while tasks.contains(where: \.isRunning) {
            let servers = Self.fuseServers(setup, marker: name)
            if servers.count > most.count { most = servers }
            usleep(20_000)
        }
        #expect(most.count == 1, "one FUSE server for the four tasks: \(most)")
        for process in tasks { process.waitUntilExit() }
        for index in 0..<4 {
            let output = try String(contentsOfFile: setup.box.path + "/task-\(index).out", encoding: .utf8)
            #expect(output == "4\nTASK=\(index)\n", "task \(index): \(output)")
            #expect(tasks[index].terminationStatus == 0)
        }
        #expect(Self.waitForNoLeftovers(setup).isEmpty, "the container ends with its last task")
        let record = "/tmp/toolbox-\(setup.uid)/containers/\(name).pid"
        #expect(!FileManager.default.fileExists(atPath: record), "the holder removed \(record)")
    }

    /// When the task that creates a named container fails (here a slow hook that fails), the
    /// tasks that waited for it fail with its error and status; they do not each try again (a
    /// hook that hangs until its timeout would cost every task of the node that time). The hook
    /// takes 3 s, so that all three tasks wait for it, also on a loaded machine.
    @Test func tasksWaitingForAFailedCreatorShareItsError() throws {
        guard let setup = try Self.setUp() else { return }
        let box = setup.box
        try box.mkdir("fail-config/hooks.d")
        try box.mkdir("fail-runs")
        chown(box.path + "/fail-runs", uid_t(setup.uid), gid_t(setup.gid))
        try box.write("fail-config/hooks.d/10-fails.sh", "#!/bin/sh\necho run >> \(box.path)/fail-runs/count\nsleep 3\necho 'no network today' >&2\nexit 3\n")
        chmod(box.path + "/fail-config/hooks.d/10-fails.sh", 0o755)
        let name = "failing-\(UUID().uuidString.prefix(8))"
        var tasks: [Process] = []
        for index in 0..<3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(setup.uid)", "--regid=\(setup.gid)", "--clear-groups", Tools.path("ns-enter"), "--image", setup.image, "--name", name, "--", "true"]
            process.environment = ["PATH": "/usr/bin:/bin", "ENROOT_CONFIG_PATH": box.path + "/fail-config"]
            let err = box.url.appendingPathComponent("failing-\(index).err")
            _ = FileManager.default.createFile(atPath: err.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: err)
            try process.run()
            tasks.append(process)
        }
        for process in tasks { process.waitUntilExit() }
        let runs = (try? String(contentsOfFile: box.path + "/fail-runs/count", encoding: .utf8)) ?? ""
        #expect(runs == "run\n", "the hook ran once, for the one task that created: \(runs)")
        for index in 0..<3 {
            let stderr = try String(contentsOfFile: box.path + "/failing-\(index).err", encoding: .utf8)
            #expect(tasks[index].terminationStatus == 78, "task \(index): \(stderr)")
            #expect(stderr.contains("ns-enter: error: hook \(box.path)/fail-config/hooks.d/10-fails.sh exited with status 3"), "task \(index): \(stderr)")
        }
        // A later task tries again (the hook runs a second time), and nothing is left behind.
        let later = try Self.run(setup, ["--image", setup.image, "--name", name, "--", "true"], environment: ["ENROOT_CONFIG_PATH": box.path + "/fail-config"])
        #expect(later.status == 78, "\(later)")
        #expect((try? String(contentsOfFile: box.path + "/fail-runs/count", encoding: .utf8)) == "run\nrun\n")
        let records = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp/toolbox-\(setup.uid)/containers")) ?? []
        #expect(!records.contains { $0.hasPrefix(name) }, "\(records)")
    }

    /// The image's /var/run is ../run (as on Fedora and RHEL): with RESOLVE_IN_ROOT the kernel
    /// answers EAGAIN to a ".." step that races with a mount anywhere on the machine (here a
    /// loop mounting and unmounting a tmpfs in a namespace of its own, as other jobs' containers
    /// do on a shared node). Starts must not fail then.
    @Test func startsWhileOtherMountsHappen() throws {
        guard let setup = try Self.setUp() else { return }
        guard getuid() == 0 else {
            print("skipped: mounting in a namespace of its own needs root")
            return
        }
        try setup.box.mkdir("storm")
        let storm = Process()
        storm.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        storm.arguments = ["-m", "/bin/sh", "-c", "while :; do mount -t tmpfs storm '\(setup.box.path)/storm'; umount '\(setup.box.path)/storm'; done"]
        try storm.run()
        defer {
            storm.terminate()
            storm.waitUntilExit()
        }
        var failures: [String] = []
        for _ in 0..<40 {
            let result = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "test -d /var/run/. && echo ok"])
            if result.status != 0 || result.stdout != "ok\n" { failures.append(result.stderr) }
        }
        #expect(failures.isEmpty, "\(failures.count) of 40 starts failed: \(Set(failures))")
    }

    /// Extended attributes read through ns-enter's FUSE server under their own names (Debian's
    /// libsquashfuse 0.1.105 swaps the trusted. and security. prefixes; the server corrects it):
    /// read with the host's getfattr, bound in with its loader.
    @Test func extendedAttributesKeepTheirNames() throws {
        guard let setup = try Self.setUp() else { return }
        let loader = "/lib64/ld-linux-x86-64.so.2"
        guard FileManager.default.fileExists(atPath: loader), FileManager.default.isExecutableFile(atPath: "/usr/bin/getfattr") else {
            print("skipped: needs getfattr (attr) and \(loader)")
            return
        }
        let made = try Tools.run(absolute: "/usr/bin/python3", ["-c", """
            import io, tarfile
            with tarfile.open("xattrs.tar", "w", format=tarfile.PAX_FORMAT) as tar:
                t = tarfile.TarInfo("f"); t.size = 1
                t.pax_headers = {"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.label": "sec", "SCHILY.xattr.trusted.t": "tv"}
                tar.addfile(t, io.BytesIO(b"x"))
            """], in: setup.box.url)
        #expect(made.status == 0, "\(made)")
        let squashed = try setup.box.run("img-squash", ["-q", "-o", setup.box.path + "/xattrs.sqsh", setup.box.path + "/layer.tar", setup.box.path + "/xattrs.tar"])
        #expect(squashed.status == 0, "\(squashed)")
        let result = try Self.run(setup, [
            "--image", setup.box.path + "/xattrs.sqsh", "--root", "--mount", "/usr/bin/getfattr:/host/getfattr:ro",
            "--mount", "/usr/lib/x86_64-linux-gnu:/host/lib:ro", "--mount", loader + ":/host/ld.so:ro",
            "--", "/host/ld.so", "--library-path", "/host/lib", "/host/getfattr", "--absolute-names", "-d", "-m", "-", "/f",
        ])
        // trusted.* is for the initial namespace's root only: not listed in the container.
        #expect(result.status == 0 && result.stdout == "# file: /f\nsecurity.label=\"sec\"\nuser.note=\"hello\"\n\n", "\(result)")
    }

    @Test func joinByHolderPid() throws {
        guard let setup = try Self.setUp() else { return }
        let name = "join-\(UUID().uuidString.prefix(8))"
        let (creator, pid) = try Self.startShared(
            setup, name: name,
            ["--image", setup.image, "--env", "SET_BY_CREATOR=1", "--name", name, "--", "/bin/sh", "-c", "echo shared > /tmp/from-creator; sleep 2"])
        usleep(200_000)
        let joined = try Self.run(setup, ["--join", pid, "--", "/bin/sh", "-c", "cat /tmp/from-creator; echo $SET_BY_CREATOR; pwd"])
        #expect(joined.status == 0, "\(joined)")
        #expect(joined.stdout == "shared\n1\n/\n", "\(joined)")
        creator.waitUntilExit()
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
        let gone = try Self.run(setup, ["--join", pid, "--", "true"])
        #expect(gone.status == 66, "\(gone)")
        #expect(gone.stderr.hasPrefix("ns-enter: error: no ns-enter container holder has pid \(pid)\n"), "\(gone)")
    }

    @Test func realRootUsesTheKernelsSquashfsWithoutAUserNamespace() throws {
        guard let setup = try Self.setUp() else { return }
        guard FileManager.default.fileExists(atPath: "/dev/loop-control") else {
            print("skipped: no /dev/loop-control (loop devices) on this machine")
            return
        }
        let result = try Tools.run(
            "ns-enter", ["--image", setup.image, "--", "/bin/sh", "-c", "id -u; grep ' / ' /proc/self/mounts | head -1; cat /proc/self/uid_map; cat /data/hello.txt"],
            in: setup.box.url)
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
        #expect(lines.count == 4, "\(result)")
        #expect(lines.first == "0")
        #expect(lines.count > 2 && lines[2] == "0 0 4294967295", "no user namespace: \(result)")
        #expect(lines.last == "hello from the image")
        let loops = try Tools.run(absolute: "/usr/sbin/losetup", ["-a"], in: setup.box.url)
        #expect(!loops.stdout.contains(setup.image), "the loop device is released: \(loops)")
    }

    @Test func fuseOverlayfsWhenTheKernelOverlayIsNotWanted() throws {
        guard let setup = try Self.setUp() else { return }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/fuse-overlayfs") else {
            print("skipped: fuse-overlayfs is not installed (contrib/install-deps.sh installs it)")
            return
        }
        let environment = ["NS_ENTER_OVERLAY": "fuse-overlayfs"]
        let writable = try Self.run(
            setup, ["--image", setup.image, "--writable", "--", "/bin/sh", "-c",
                    "grep -c ' / fuse.fuse-overlayfs ' /proc/self/mounts; echo changed > /data/hello.txt && cat /data/hello.txt; grep -c tbxtest /etc/passwd"],
            environment: environment)
        #expect(writable.status == 0, "\(writable)")
        #expect(writable.stdout == "1\nchanged\n1\n", "\(writable)")
        // A command that opens its own descriptors 3 to 9 (and closes them) keeps its container:
        // the task's hold on it is on a high descriptor (fuse-overlayfs is stopped when the last
        // hold goes, which would take the root away under the command).
        let ownDescriptors = try Self.run(
            setup, ["--image", setup.image, "--name", "fd-\(UUID().uuidString.prefix(8))", "--", "/bin/sh", "-c",
                    "for fd in 3 4 5 6 7 8 9; do eval \"exec $fd>/tmp/log$fd\"; eval \"exec $fd>&-\"; done; sleep 0.5; cat /data/hello.txt"],
            environment: environment)
        #expect(ownDescriptors.status == 0 && ownDescriptors.stdout == "hello from the image\n", "\(ownDescriptors)")
        let readOnly = try Self.run(setup, ["--image", setup.image, "--", "/bin/sh", "-c", "touch /x 2>&1; cat /data/hello.txt"], environment: environment)
        #expect(readOnly.stdout.contains("Read-only file system") && readOnly.stdout.hasSuffix("hello from the image\n"), "\(readOnly)")
        #expect(Self.waitForNoLeftovers(setup).isEmpty)
        let helpers = try Tools.run(absolute: "/usr/bin/pgrep", ["-u", "\(setup.uid)", "-x", "fuse-overlayfs"], in: setup.box.url)
        #expect(helpers.stdout.split(separator: "\n").allSatisfy { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? " Z ").split(separator: " ")[2] == "Z"
        }, "fuse-overlayfs ends with the container: \(helpers)")
    }

    @Test func hookRunBadInput() throws {
        let box = try Sandbox()
        try box.mkdir("root")
        let missing = try box.run("hook-run", ["--rootfs", box.path + "/nowhere"])
        #expect(missing.status == 66, "\(missing)")
        // A limit of 0 would kill every hook at once; an unreadable HOOK_RUN_TIMEOUT was ignored.
        let zero = try box.run("hook-run", ["--rootfs", box.path + "/root", "--timeout", "0"])
        #expect(zero.status == 64 && zero.stderr == "hook-run: error: --timeout must be a number of seconds above 0, not 0.0\n", "\(zero)")
        let noEquals = try box.run("hook-run", ["--rootfs", box.path + "/root", "--env", "NOEQ"])
        #expect(noEquals.status == 64 && noEquals.stderr.hasPrefix("hook-run: error: --env NOEQ: write NAME=VALUE\n  hint: e.g. --env OMP_NUM_THREADS=8"), "\(noEquals)")
        let unreadable = try box.run("hook-run", ["--rootfs", box.path + "/root"], environment: ["HOOK_RUN_TIMEOUT": "abc"])
        #expect(unreadable.status == 65 && unreadable.stderr.hasPrefix("hook-run: error: HOOK_RUN_TIMEOUT is 'abc', not a number of seconds above 0\n"), "\(unreadable)")
        #expect(missing.stderr == "hook-run: error: root file system \(box.path)/nowhere is not a directory\n")
        let notJSON = try box.write("a.json", "not json")
        let bad = try box.run("hook-run", ["--rootfs", box.path + "/root", "--annotations", notJSON])
        #expect(bad.status == 65, "\(bad)")
        #expect(bad.stderr.hasPrefix("hook-run: error: \(notJSON): not a JSON object of strings\n"), "\(bad)")
        let nested = try box.write("b.json", #"{"com.x": {"y": 1}}"#)
        let wrong = try box.run("hook-run", ["--rootfs", box.path + "/root", "--annotations", nested])
        #expect(wrong.status == 65, "\(wrong)")
        // A hook that writes a broken fstab line.
        try box.write("config/hooks.d/10-bad.sh", "#!/bin/sh\necho '/a /b none opt ${UNDEFINED_VARIABLE}' >> \"$ENROOT_MOUNTS\"\n")
        chmod(box.path + "/config/hooks.d/10-bad.sh", 0o755)
        let fstab = try box.run("hook-run", ["--rootfs", box.path + "/root"], environment: ["ENROOT_CONFIG_PATH": box.path + "/config"])
        #expect(fstab.status == 65, "\(fstab)")
        #expect(fstab.stderr == "hook-run: error: ENROOT_MOUNTS:1: variable UNDEFINED_VARIABLE is not set\n", "\(fstab)")
        // Without --apply, what --apply would refuse is refused too (a nofail line is not).
        for (line, status, stderr) in [
            ("/etc /x none bind,bogusopt", Int32(65), "hook-run: error: ENROOT_MOUNTS:1: mount option 'bogusopt' is not supported for a bind mount\n"),
            ("/nonexistent /x none bind", Int32(66), "hook-run: error: ENROOT_MOUNTS:1: the mount source /nonexistent does not exist on the host\n  hint: create it first, or fix the hook's line (nofail skips a source that may be missing)\n"),
            ("/etc /x none bind,x-create=weird", Int32(65), "hook-run: error: ENROOT_MOUNTS:1: mount option 'x-create=weird': x-create takes dir, file or auto\n"),
            ("/nonexistent /x none bind,nofail", Int32(0), ""),
        ] {
            try box.write("config/hooks.d/10-bad.sh", "#!/bin/sh\necho '\(line)' >> \"$ENROOT_MOUNTS\"\n")
            chmod(box.path + "/config/hooks.d/10-bad.sh", 0o755)
            let checked = try box.run("hook-run", ["--rootfs", box.path + "/root"], environment: ["ENROOT_CONFIG_PATH": box.path + "/config"])
            #expect(checked.status == status && checked.stderr == stderr, "\(line): \(checked)")
        }
    }

    /// The FUSE server keeps the last blocks it decompressed in memory (8 MiB): a file larger
    /// than that read twice over, pieces at offsets that straddle blocks, and small files whose
    /// tails share fragment blocks, interleaved, all read back exactly as they are.
    @Test func readsThroughTheServersBlockMemoryAreExact() throws {
        guard let setup = try Self.setUp() else { return }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func bytes(_ count: Int) -> [UInt8] {
            (0..<count).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return UInt8(truncatingIfNeeded: state >> 33)
            }
        }
        try setup.box.mkdir("data/blocks")
        _ = try setup.box.write("data/blocks/big", bytes(12 << 20 + 12345))
        for index in 0..<6 { _ = try setup.box.write("data/blocks/small\(index)", bytes(1000 + 7000 * index)) }
        let tar = try Tools.run(absolute: "/usr/bin/tar", ["-C", setup.box.path + "/data", "-cf", setup.box.path + "/data.tar", "blocks"], in: setup.box.url)
        #expect(tar.status == 0, "\(tar)")
        let image = setup.box.path + "/blocks.sqsh"
        let squashed = try setup.box.run("img-squash", ["-q", "-o", image, setup.box.path + "/layer.tar", setup.box.path + "/data.tar"])
        #expect(squashed.status == 0, "\(squashed)")
        // The same script on the host's files and in the container.
        let script = """
            cd "$1"
            md5sum big small0 small3 big small5 small1
            for at in 1 31 32 33 97 64 0 95 96; do dd if=big bs=4096 skip=$((at * 32 - 1)) count=3 2>/dev/null | md5sum; done
            dd if=small4 bs=1000 skip=3 count=20 2>/dev/null | md5sum
            cat small2 big small4 | md5sum
            """
        let host = try Tools.run(absolute: "/bin/sh", ["-c", script, "sh", setup.box.path + "/data/blocks"], in: setup.box.url)
        #expect(host.status == 0, "\(host)")
        let inside = try Self.run(setup, ["--image", image, "--", "/bin/sh", "-c", script, "sh", "/blocks"])
        #expect(inside.status == 0, "\(inside)")
        #expect(inside.stdout == host.stdout, "\(inside)")
        #expect(inside.stdout.split(separator: "\n").count == 17, "\(inside)")
    }

    @Test func theBlockCacheServesLaterStartsTheSameBytes() throws {
        guard let setup = try Self.setUp() else { return }
        try setup.box.mkdir("cache")
        chown(setup.box.path + "/cache", uid_t(setup.uid), gid_t(setup.gid))
        let environment = ["NS_ENTER_CACHE": setup.box.path + "/cache"]
        let command = ["--image", setup.image, "--", "/bin/sh", "-c", "md5sum /bin/busybox /data/hello.txt; cat /data/hello.txt"]
        let first = try Self.run(setup, command, environment: environment)
        #expect(first.status == 0, "\(first)")
        let directories = try FileManager.default.contentsOfDirectory(atPath: setup.box.path + "/cache")
        #expect(directories.count == 1, "one directory per image: \(directories)")
        let blocks = setup.box.path + "/cache/" + (directories.first ?? "")
        let files = try FileManager.default.contentsOfDirectory(atPath: blocks)
        #expect(files.count >= 10, "busybox's blocks are cached: \(files)")
        // A later start reads them; a damaged block (wrong size) is decompressed again instead.
        let victim = blocks + "/" + (files.sorted().first ?? "")
        try Data("short".utf8).write(to: URL(fileURLWithPath: victim))
        let second = try Self.run(setup, command, environment: environment)
        #expect(second.status == 0, "\(second)")
        #expect(second.stdout == first.stdout, "\(second)")
        let reference = try Self.run(setup, command)
        #expect(reference.stdout == first.stdout, "without the cache: \(reference)")
        // A limit of 0 MiB writes nothing.
        try setup.box.mkdir("cache0")
        chown(setup.box.path + "/cache0", uid_t(setup.uid), gid_t(setup.gid))
        let limited = try Self.run(
            setup, command, environment: ["NS_ENTER_CACHE": setup.box.path + "/cache0", "NS_ENTER_CACHE_LIMIT": "0"])
        #expect(limited.stdout == first.stdout)
        // The cache's variables are ns-enter's, not the container's.
        let inside = try Self.run(
            setup, ["--image", setup.image, "--", "/bin/sh", "-c", "echo ${NS_ENTER_CACHE-none} ${NS_ENTER_CACHE_LIMIT-none}"],
            environment: ["NS_ENTER_CACHE": setup.box.path + "/cache0", "NS_ENTER_CACHE_LIMIT": "0"])
        #expect(inside.stdout == "none none\n", "\(inside)")
        let empty = try FileManager.default.contentsOfDirectory(atPath: setup.box.path + "/cache0")
        #expect(try empty.allSatisfy { try FileManager.default.contentsOfDirectory(atPath: setup.box.path + "/cache0/" + $0).isEmpty })
        // A directory on the way that others may write to (and not sticky): no cache, the
        // container starts all the same (its blocks could be changed under it otherwise).
        try setup.box.mkdir("open")
        chmod(setup.box.path + "/open", 0o777)
        let unsafe = try Self.run(setup, command, environment: ["NS_ENTER_CACHE": setup.box.path + "/open/mine"])
        #expect(unsafe.status == 0 && unsafe.stdout == first.stdout, "\(unsafe)")
        #expect(!FileManager.default.fileExists(atPath: setup.box.path + "/open/mine/" + (directories.first ?? "")))
        // %j: a directory per job, made private to the user.
        try setup.box.mkdir("shared")
        chmod(setup.box.path + "/shared", 0o1777)
        let perJob = try Self.run(
            setup, command, environment: ["NS_ENTER_CACHE": setup.box.path + "/shared/user/%j", "SLURM_JOB_ID": "4242"])
        #expect(perJob.status == 0 && perJob.stdout == first.stdout, "\(perJob)")
        let jobBlocks = try FileManager.default.contentsOfDirectory(atPath: setup.box.path + "/shared/user/4242")
        #expect(jobBlocks.count == 1, "\(jobBlocks)")
    }
}
