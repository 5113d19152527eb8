import CRuntimeShim
import ArgumentParser
import FoundationEssentials
import Glibc
import Hooks
import Runtime
import ToolSupport
import ToolboxCore
import ToolboxModel

/// `ns-enter`: runs a command inside the environment's container, rootless, and becomes it.
public struct NamespaceEnter: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "ns-enter",
        abstract: "Run a command inside an environment's container, without root, and become it.",
        discussion: """
            ns-enter --environment FILE -- COMMAND [ARGS...] builds the container that the \
            document FILE describes (the output of img-squash, or of edf-expand for an EDF whose \
            image is a squashfs file; img-squash's output for img-pull's alone, or an image's \
            FILE.json, is the image with the EDF's defaults; - reads stdin) and executes COMMAND \
            in it: its exit status, \
            signals and stdio are the job's. Without FILE, the flags describe the container \
            (--image, --mount, --env, --workdir, --writable, ...); with FILE they add to it.

            The container: a user namespace mapping the caller's uid and gid (to root with \
            --root), a mount namespace, the image mounted read-only through a FUSE server that \
            ns-enter starts (libsquashfuse; the kernel's squashfs and a loop device for real \
            root), an overlay with a tmpfs upper layer (the kernel's; fuse-overlayfs when the \
            kernel refuses or NS_ENTER_OVERLAY=fuse-overlayfs; changes vanish at exit; read-only \
            unless writable), nosuid and nodev. System mounts: /proc, /sys (read-only), /dev \
            (the host's; with ENROOT_RESTRICT_DEV=y a tmpfs with only null, zero, full, random, \
            urandom, tty, pts, shm and what hooks add), /tmp, /var/run and /var/lock (tmpfs), the host's /etc/hosts, \
            /etc/hostname, /etc/resolv.conf, /etc/machine-id; the user is added to /etc/passwd \
            and /etc/group. Then the environment's mounts, in order, then the hooks (hook-run, \
            from $TOOLBOX_SYSCONF_PATH/hooks.d and $ENROOT_CONFIG_PATH/hooks.d; the services \
            they start are stopped when the container ends), then pivot_root.

            Environment: the caller's (without PATH, LD_LIBRARY_PATH, LD_PRELOAD, LANG, LANGUAGE, \
            LC_ALL, NS_ENTER_CACHE and NS_ENTER_CACHE_LIMIT), then the \
            image's Env, then the EDF's [env] (an empty value unsets), then what hooks add; PATH \
            defaults to the usual system directories. Working directory: the EDF's workdir, \
            else the image's WorkingDir, else /. With the entrypoint on, the image's Entrypoint \
            runs once for the container, as Pyxis runs it, with the arguments /bin/sh -c 'kill \
            -STOP $$', and COMMAND then runs with the environment and directory it prepared \
            (its output shows with the annotation com.pyxis.entrypoint_log=true; without a \
            COMMAND the Entrypoint runs with the image's Cmd). The annotation \
            com.pyxis.pytorch_remap_vars=true sets RANK and LOCAL_RANK from SLURM_PROCID and \
            SLURM_LOCALID where the image has PYTORCH_VERSION.

            One container per node: with --name NAME the first task creates the container and \
            the others join it (one mount, one FUSE server); --join PID joins the container \
            whose holder process is PID. The container ends when its last task (and everything \
            that task started) has exited; nothing stays mounted or running.

            NS_ENTER_TIMINGS=1 prints how long each step took, on stderr. NS_ENTER_CACHE=DIR \
            (e.g. a directory on /dev/shm for the job) keeps the image blocks the FUSE server \
            decompresses, for the later containers of the same image (NS_ENTER_CACHE_LIMIT: MiB \
            written per container, default 1024; %j, %s and %N in DIR as for --name); nothing there is \
            removed automatically. No cache where a directory on the way could be changed by \
            another user.

            Needs: unprivileged user namespaces (sysctl user.max_user_namespaces > 0), \
            /dev/fuse readable and writable by users (mode 0666), Linux 5.11 or later.

            Exit status: the command's (128+N when killed by signal N), or:
            \(ExitStatus.helpTable([.usage, .invalidInput, .noInput, .unavailable, .software, .osError, .hookFailed, .commandNotExecutable, .commandNotFound]))
            """,
        version: toolboxVersion
    )

    @Option(name: [.customShort("e"), .long], help: "The environment document (img-squash's output; - for stdin).", completion: .file())
    var environment: String?

    @Option(help: "The environment variable that holds the environment document (what the srun wrapper hands to the tasks).")
    var environmentVariable: String?

    @Option(help: "The squashfs image (standalone form, or instead of the document's).", completion: .file())
    var image: String?

    @Option(name: .customLong("mount"), help: "Add a mount: SOURCE:DESTINATION[:FLAGS], FLAGS joined with + (ro, sqsh, ...); a relative SOURCE is taken from the current directory; SOURCE tmpfs for a tmpfs, umount to unmount DESTINATION.")
    var mounts: [String] = []

    @Option(name: .customLong("env"), help: "Set a variable in the container: NAME=VALUE (NAME= unsets it).")
    var variables: [String] = []

    @Option(help: "The working directory in the container.")
    var workdir: String?

    @Flag(inversion: .prefixedNo, help: "Make the root file system writable (changes are discarded at exit).")
    var writable: Bool?

    @Flag(inversion: .prefixedNo, help: "Run the image's Entrypoint with the command as its arguments.")
    var entrypoint: Bool?

    @Option(name: .customLong("annotation"), help: "Set an annotation (steers the hooks): KEY=VALUE.")
    var annotations: [String] = []

    @Flag(help: "Map the caller to root inside the container.")
    var root = false

    @Option(help: "Share the container under this name: the first task creates it, the others join it; %j, %s and %N stand for $SLURM_JOB_ID, $SLURM_STEP_ID and $SLURMD_NODENAME (else the short host name) (%j.%s.%N: one container per job step and node).")
    var name: String?

    @Option(help: "Join the running container whose holder process has this pid.")
    var join: Int32?

    @Flag(help: "Do not run hooks.")
    var noHooks = false

    @Option(parsing: .unconditional, help: "Seconds a hook may run before it is killed (default: HOOK_RUN_TIMEOUT, else 60).")
    var hookTimeout: Double?

    @Argument(parsing: .postTerminator, help: "The command and its arguments (after --).")
    var command: [String] = []

    public init() {}

    // Options are checked in run(), not in validate(): swift-argument-parser validates before it
    // reports unknown options, and `ns-enter --bogus` must say that --bogus is unknown.
    public func run() throws {
        let options = Options(self)
        try options.validate()
        try options.run()
    }
}

extension NamespaceEnter {
    /// ns-enter's options as plain values, and what runs with them. Every task of a job step
    /// starts ns-enter, and swift-argument-parser's property wrappers cost type-metadata work at
    /// each start; the fast parser (NamespaceEnter+FastParse.swift) fills these directly, and
    /// a command that swift-argument-parser parsed converts to them.
    public struct Options: Equatable, Sendable {
        var environment: String?
        var environmentVariable: String?
        var image: String?
        var mounts: [String] = []
        var variables: [String] = []
        var workdir: String?
        var writable: Bool?
        var entrypoint: Bool?
        var annotations: [String] = []
        var root: Bool = false
        var name: String?
        var join: Int32?
        var noHooks: Bool = false
        var hookTimeout: Double?
        var command: [String] = []

        init() {}

        init(_ parsed: NamespaceEnter) {
            environment = parsed.environment
            environmentVariable = parsed.environmentVariable
            image = parsed.image
            mounts = parsed.mounts
            variables = parsed.variables
            workdir = parsed.workdir
            writable = parsed.writable
            entrypoint = parsed.entrypoint
            annotations = parsed.annotations
            root = parsed.root
            name = parsed.name
            join = parsed.join
            noHooks = parsed.noHooks
            hookTimeout = parsed.hookTimeout
            command = parsed.command
        }

        func validate() throws(ValidationError) {
            if join != nil
                && (environment != nil || environmentVariable != nil || image != nil || name != nil || !mounts.isEmpty || !annotations.isEmpty || root
                    || writable != nil || entrypoint != nil || noHooks || hookTimeout != nil)
            {
                throw ValidationError(
                    "--join enters a running container: only --env and --workdir apply (not --environment, --image, --name, --mount, --annotation, --root, --writable, --entrypoint, --no-hooks, --hook-timeout)")
            }
            if join == nil && environment == nil && environmentVariable == nil && image == nil {
                throw ValidationError("say what to run in: --environment FILE, --environment-variable NAME, --image FILE or --join PID")
            }
            if environment != nil && environmentVariable != nil {
                throw ValidationError("give --environment or --environment-variable, not both")
            }
            if let workdir, !workdir.hasPrefix("/") {
                throw ValidationError("--workdir must be an absolute path in the container, not \(workdir)")
            }
            if let name, name.isEmpty || name.contains("/") || name.hasPrefix(".") {
                throw ValidationError("--name must be a plain name (no '/', not starting with '.')")
            }
        }

        func run() throws {
            Timings.mark("started")
            var context = ProcessContext(environment: ProcessEnvironment.current, currentDirectory: FileReader.currentDirectory())
            if let join {
                try joinAndRun(holder: join, context: context)
            }
            let request = try self.request(context: context)
            // The document is not a variable of the container (nor of the hooks).
            if let environmentVariable { context.environment[environmentVariable] = nil }
            let runtime = RuntimeDirectory(environment: context.environment)

            guard let name = try name.map({ name throws(Diagnostic) in try Self.expand(name, environment: context.environment) }) else {
                var (spec, source) = try makeSpec(request, context: context)
                let identity = Identity.current(remapRoot: spec.remapRoot)
                var built = try build(spec: spec, source: source, identity: identity, runtime: runtime, context: context)
                try runEntrypointOnce(&built, spec: &spec, context: context)
                // Helpers (fuse-overlayfs) need a holder to stop them when the container ends.
                let keep = built.helpers.isEmpty
                    ? nil : try publish(built, spec: spec, identity: identity, request: request, records: nil, name: nil)
                try launch(environment: built.environment, spec: spec, context: context, keep: keep)
            }
            try runtime.prepare()
            let records = Glibc.open(runtime.records, TBX_O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard records >= 0 else {
                let failure = SystemCallError("open")
                throw Diagnostic(kind: .output, message: "cannot open \(runtime.records): \(failure.reason)")
            }
            // NAME.lock is removed by whoever ends the name's use (the holder when the container
            // ends, or a creator that failed), under the lock: a task that then finds its lock
            // file gone from the directory opens the new one.
            var lock: Int32 = -1
            while lock < 0 {
                let fd = openat(records, name + ".lock", O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0o600)
                guard fd >= 0 else {
                    let failure = SystemCallError("open")
                    throw Diagnostic(kind: .output, message: "cannot open \(runtime.records)/\(name).lock: \(failure.reason)")
                }
                while flock(fd, LOCK_EX) != 0 {
                    let failure = SystemCallError("flock")
                    if failure.code == EINTR { continue }
                    throw Diagnostic(kind: .output, message: "cannot lock \(runtime.records)/\(name).lock: \(failure.reason)")
                }
                var held = stat()
                var named = stat()
                if fstat(fd, &held) == 0, fstatat(records, name + ".lock", &named, AT_SYMLINK_NOFOLLOW) == 0,
                    held.st_ino == named.st_ino, held.st_dev == named.st_dev
                {
                    lock = fd
                } else {
                    // A creator that failed left its error in the lock file it removed: the
                    // tasks that waited for it fail as it did, instead of each trying again (a
                    // hook that times out would otherwise cost every task of the node its time).
                    let failure = SharedFailure.read(fd)
                    System.close(fd)
                    if let failure {
                        System.close(records)
                        StandardStreams.writeError(failure.message)
                        throw ToolExit(status: failure.status)
                    }
                }
            }
            func release(removing: Bool = false) {
                if removing { unlinkat(records, name + ".lock", 0) }
                flock(lock, LOCK_UN)
                System.close(lock)
                System.close(records)
            }
            if let holder = SharedContainer.recorded(records: records, name: name),
                case .success(let target) = SharedContainer.open(holder: holder)
            {
                release()
                // The tasks of a job step bring the document their creator was given: nothing to
                // decode. Another request is decoded (and must be valid), and a name reused for
                // another image (a stale or shared name) would run the command in the wrong
                // container.
                if target.state.request != request.fingerprint {
                    let (spec, _) = try makeSpec(request, context: context)
                    if !target.state.image.isEmpty && !Self.sameFile(target.state.image, spec.image) {
                        // A missing or broken file is said to be so, as to a creator.
                        System.close(try PreparedImage.checkImage(spec.image, what: "image", source: nil))
                        throw Diagnostic(
                            kind: .invalid, message: "--name \(name): the container of that name runs \(target.state.image), not \(spec.image)",
                            hint: "give another --name (%j.%s.%N names one container per job step and node), or the same image")
                    }
                }
                // What only a creator applies: said, not silently dropped.
                let ignored = ignoredWhenJoining
                if !ignored.isEmpty {
                    StandardStreams.writeError(
                        Diagnostic.warning(
                            "\(ignored.joined(separator: ", ")) ignored: joining the running container \(name), which its first task built",
                            hint: "a joining task runs as the first one did; --env and --workdir apply").rendered(tool: "ns-enter"))
                }
                try enter(target, context: context)
            }
            var spec: ContainerSpec
            var built: ContainerBuilder.Built
            let keep: Int32
            do {
                let source: String?
                (spec, source) = try makeSpec(request, context: context)
                let identity = Identity.current(remapRoot: spec.remapRoot)
                built = try build(spec: spec, source: source, identity: identity, runtime: runtime, context: context)
                try runEntrypointOnce(&built, spec: &spec, context: context)
                keep = try publish(built, spec: spec, identity: identity, request: request, records: records, name: name)
            } catch {
                let removing = SharedContainer.recorded(records: records, name: name) == nil
                if removing, let diagnostic = error as? Diagnostic {
                    SharedFailure.write(lock, status: ExitStatus(diagnostic.kind), message: diagnostic.rendered(tool: "ns-enter"))
                }
                release(removing: removing)
                throw error
            }
            release()
            try launch(environment: built.environment, spec: spec, context: context, keep: keep)
        }

        func build(
            spec: ContainerSpec, source: String?, identity: Identity, runtime: RuntimeDirectory, context: ProcessContext
        ) throws(Diagnostic) -> ContainerBuilder.Built {
            var stage: HookStage?
            let directories = HookDirectories(environment: context.environment)
            let hooks = noHooks ? [] : directories.hooks()
            if !hooks.isEmpty {
                let timeout = try HookRunner.timeout(option: hookTimeout, optionName: "--hook-timeout", environment: context.environment)
                // What enroot tells its hooks of the container (its --root and --rw): 10-home.sh
                // binds the home at /root for a container whose user is root, for example.
                var hookEnvironment = context.environment
                hookEnvironment["ENROOT_REMAP_ROOT"] = spec.remapRoot ? "y" : nil
                hookEnvironment["ENROOT_ROOTFS_WRITABLE"] = spec.writable ? "y" : nil
                stage = { (rootfs: RootFilesystem, soFar: ContainerEnvironment) throws(Diagnostic) -> HookStageResult in
                    var runner = HookRunner(
                        hooks: hooks, rootfs: rootfs.path, pid: getpid(), annotations: spec.annotations,
                        environment: hookEnvironment, containerVariables: soFar.set.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                        timeout: timeout)
                    // On the container's private tmpfs: it lives as long as the container.
                    runner.stateDirectory = runtime.mountPoint + "/hooks"
                    runner.writableMounts = rootfs.writableMountIDs
                    let report = try runner.run(mounter: FstabMounter(rootfs: rootfs, tool: "ns-enter"))
                    return HookStageResult(variables: report.env.map { ($0.name, $0.value) }, services: report.services)
                }
            }
            let builder = ContainerBuilder(spec: spec, identity: identity, runtime: runtime, source: source, hooks: stage)
            return try builder.build()
        }

        /// With the entrypoint on and a command to run, the image's entrypoint runs once for the
        /// container, as Pyxis runs it (see EntrypointRun): the tasks get the environment and
        /// directory it prepared and run their commands directly. Also Pyxis's PyTorch remap.
        func runEntrypointOnce(_ built: inout ContainerBuilder.Built, spec: inout ContainerSpec, context: ProcessContext) throws(Diagnostic) {
            built.environment.remapPyTorchRanks = spec.annotations["com.pyxis.pytorch_remap_vars"] == "true"
            guard spec.entrypoint, !command.isEmpty, let entrypoint = spec.config?.Entrypoint, !entrypoint.isEmpty else { return }
            let given = built.environment.applied(to: context.environment)
            let timeout = try HookRunner.timeout(option: hookTimeout, optionName: "--hook-timeout", environment: context.environment)
            let outcome: EntrypointRun.Outcome?
            do {
                outcome = try EntrypointRun.run(
                    entrypoint, environment: given, workdir: built.environment.workdir,
                    showOutput: spec.annotations["com.pyxis.entrypoint_log"] == "true", timeout: timeout)
            } catch {
                System.stop(built.helpers, groups: true)
                throw error
            }
            guard let outcome else {
                StandardStreams.writeError(
                    "ns-enter: note: the image has no /bin/sh: its entrypoint runs before each task's command (as docker run runs it), not once for the container as Pyxis runs it\n")
                return
            }
            // The EDF's [env] and workdir (and --env, --workdir) stay the user's, as Pyxis keeps
            // --container-env names and --container-workdir over the container's (spec 1.6, 3.4).
            built.environment.adopt(outcome.environment, given: given, keeping: Set(spec.env.keys))
            if let directory = outcome.workdir, (spec.workdir ?? "").isEmpty { built.environment.workdir = directory }
            if let group = outcome.leftGroup { built.helpers.append(group) }
            spec.entrypoint = false
        }

        /// Starts the container's holder (see SharedContainer); stops the helpers if that fails.
        func publish(
            _ built: ContainerBuilder.Built, spec: ContainerSpec, identity: Identity, request: Request, records: Int32?, name: String?
        ) throws(Diagnostic) -> Int32 {
            do {
                return try SharedContainer.publish(
                    state(built, spec: spec, identity: identity, request: request), records: records, name: name, helpers: built.helpers)
            } catch {
                System.stop(built.helpers, groups: true)
                throw error
            }
        }

        /// What a task that joins this container needs to run as this one does.
        func state(_ built: ContainerBuilder.Built, spec: ContainerSpec, identity: Identity, request: Request) -> SharedContainer.State {
            SharedContainer.State(
                environment: built.environment, privileged: identity.privileged, entrypoint: spec.entrypoint,
                entrypointCommand: spec.config?.Entrypoint ?? [], cmd: spec.config?.Cmd ?? [], image: spec.image,
                request: request.fingerprint)
        }

        func launch(environment: ContainerEnvironment, spec: ContainerSpec, context: ProcessContext, keep: Int32?) throws -> Never {
            let arguments = try Launcher.arguments(
                command: command, entrypoint: spec.entrypoint, config: (spec.config?.Entrypoint, spec.config?.Cmd))
            if let keep { SharedContainer.keepAcrossExec(keep) }
            try Launcher.exec(arguments, environment: environment.applied(to: context.environment), workdir: environment.workdir)
        }

        func joinAndRun(holder: Int32, context: ProcessContext) throws -> Never {
            switch SharedContainer.open(holder: holder) {
            case .success(let target): try enter(target, context: context)
            case .failure(.stopping):
                throw Diagnostic(kind: .notFound, message: "container \(holder) is shutting down (its last task has exited)")
            case .failure(.gone(let message)):
                throw Diagnostic(kind: .notFound, message: message, hint: "the holder's pid is in $XDG_RUNTIME_DIR/toolbox/containers/NAME.pid")
            }
        }

        /// Joins a running container and runs the command there.
        func enter(_ target: SharedContainer.Target, context: ProcessContext) throws -> Never {
            Timings.mark("container opened")
            try Namespaces.join(user: target.userNamespace, mount: target.mountNamespace, privileged: target.state.privileged)
            Timings.mark("namespaces joined")
            System.close(target.userNamespace)
            System.close(target.mountNamespace)
            var environment = target.state.environment
            for variable in variables {
                let (key, value) = try Inputs.split(variable, option: "--env")
                if value.isEmpty { environment.remove(key) } else { environment.assign(key, value) }
            }
            if let workdir { environment.workdir = workdir }
            let state = target.state
            let arguments = try Launcher.arguments(
                command: command, entrypoint: state.entrypoint, config: (state.entrypointCommand, state.cmd))
            SharedContainer.keepAcrossExec(target.lock)
            try Launcher.exec(arguments, environment: environment.applied(to: context.environment), workdir: environment.workdir)
        }

        /// The options a task that joins a running container by --name does not apply.
        var ignoredWhenJoining: [String] {
            var names: [String] = []
            if !mounts.isEmpty { names.append("--mount") }
            if !annotations.isEmpty { names.append("--annotation") }
            if root { names.append("--root") }
            if writable != nil { names.append(writable == true ? "--writable" : "--no-writable") }
            if entrypoint != nil { names.append(entrypoint == true ? "--entrypoint" : "--no-entrypoint") }
            if noHooks { names.append("--no-hooks") }
            if hookTimeout != nil { names.append("--hook-timeout") }
            return names
        }

        /// Whether two paths name one file (links followed); equal paths always do.
        static func sameFile(_ a: String, _ b: String) -> Bool {
            if a == b { return true }
            var first = stat()
            var second = stat()
            return stat(a, &first) == 0 && stat(b, &second) == 0 && first.st_dev == second.st_dev && first.st_ino == second.st_ino
        }

        /// `--name` with `%j`, `%s` and `%N` replaced by the job's and the step's ids and the node's
        /// name (`%%`: `%`).
        static func expand(_ name: String, environment: [String: String]) throws(Diagnostic) -> String {
            let result: String
            do {
                result = try SlurmPattern.expand(name, environment: environment)
            } catch {
                switch error {
                case .unknown(let code):
                    throw Diagnostic(kind: .invalid, message: "--name \(name): %\(code) is not %j, %s, %N or %%")
                case .unset(let variable):
                    throw Diagnostic(
                        kind: .invalid, message: "--name \(name): \(variable) is not set", hint: "%j and %s are for tasks that Slurm starts (srun)")
                }
            }
            if result.contains("/") || result.hasPrefix(".") {
                throw Diagnostic(kind: .invalid, message: "--name \(name) gives \(result), which is not a plain name")
            }
            if result.utf8.count > 200 {
                throw Diagnostic(kind: .invalid, message: "--name is \(result.utf8.count) bytes long; at most 200", hint: "%j.%s.%N names one container per job step and node")
            }
            return result
        }

        /// The container's description: the document, then the flags.
        /// What this task is asked to run, as given: the environment document's text and where it
        /// came from, and the --image option.
        struct Request {
            var document: String?
            var source: String?
            var image: String?
            /// FNV-1a (64 bits) of the document and the image option: equal requests run in one
            /// container without decoding the document again.
            var fingerprint: String {
                // Each part with its length, and absent apart from empty: no two requests run
                // together into the same bytes.
                func part(_ text: String?) -> [UInt8] { text.map { Array("\($0.utf8.count):".utf8) + Array($0.utf8) } ?? Array("-".utf8) }
                var hash: UInt64 = 0xcbf2_9ce4_8422_2325
                for byte in part(document) + part(image) {
                    hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
                }
                let digits = String(hash, radix: 16)
                return String(repeating: "0", count: 16 - digits.count) + digits
            }
        }

        func request(context: ProcessContext) throws -> Request {
            var request = Request(image: image.map { Path.absolute($0, relativeTo: context.currentDirectory) })
            if let environmentVariable {
                guard let text = context.environment[environmentVariable], !text.isEmpty else {
                    throw Diagnostic(
                        kind: .notFound, message: "the environment variable \(environmentVariable) (--environment-variable) is not set",
                        hint: "the srun wrapper sets it for the tasks it starts")
                }
                request.document = text
                request.source = "$" + environmentVariable
            } else if let environment {
                let (text, name) = try Inputs.read(environment, context: context)
                request.document = text
                request.source = name
            }
            return request
        }

        func makeSpec(_ request: Request, context: ProcessContext) throws -> (ContainerSpec, String?) {
            var spec: ContainerSpec
            let source = request.source
            let documentText = request.document
            let image = request.image
            if let text = documentText {
                let document = try EnvironmentDocument.readForContainer(text, source: source ?? "<stdin>", previous: "img-squash (or edf-expand)")
                if let image {
                    spec = try ContainerSpec.from(document: document.withImage(image), source: source)
                } else {
                    spec = try ContainerSpec.from(document: document, source: source)
                }
            } else {
                let path = image ?? Path.absolute("", relativeTo: context.currentDirectory)
                spec = ContainerSpec(image: path, config: ContainerSpec.storedConfig(of: path))
                spec.foreignImage = spec.config == nil && !ContainerSpec.hasMetadata(path)
            }
            for (index, entry) in mounts.enumerated() {
                spec.mounts.append(try Self.parseMount(entry, index: index, currentDirectory: context.currentDirectory))
            }
            for variable in variables {
                let (key, value) = try Inputs.split(variable, option: "--env")
                spec.env[key] = value
            }
            for annotation in annotations {
                let (key, value) = try Inputs.split(annotation, option: "--annotation")
                spec.annotations[key] = value
            }
            if let workdir { spec.workdir = workdir }
            if let writable { spec.writable = writable }
            if let entrypoint { spec.entrypoint = entrypoint }
            if root { spec.remapRoot = true }
            return (spec, source)
        }

        /// SOURCE:DESTINATION[:FLAGS] as in an EDF (flags joined with + or ,; sqsh; tmpfs source).
        static func parseMount(_ entry: String, index: Int, currentDirectory: String) throws(Diagnostic) -> Mount {
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard (1...3).contains(parts.count), !parts.contains(where: \.isEmpty) else {
                throw Diagnostic(kind: .invalid, message: "--mount \(entry): write SOURCE:DESTINATION[:FLAGS]")
            }
            var type = Mount.Kind.bind
            var options: [String] = []
            if parts.count == 3 {
                for flag in parts[2].split(whereSeparator: { $0 == "+" || $0 == "," }).map(String.init) {
                    if let problem = Mount.badValue(flag) {
                        throw Diagnostic(kind: .invalid, message: "--mount \(entry): '\(flag)': \(problem)")
                    }
                    if flag == "sqsh" { type = .squashfs } else if !options.contains(flag) { options.append(flag) }
                }
                for (one, other) in Mount.opposites where options.contains(one) && options.contains(other) {
                    throw Diagnostic(kind: .invalid, message: "--mount \(entry): '\(one)' and '\(other)' contradict each other")
                }
                if let problem = Mount.conflict(options) {
                    throw Diagnostic(kind: .invalid, message: "--mount \(entry): \(problem)", hint: "keep one of them")
                }
            }
            var source = parts[0]
            if source == "tmpfs" {
                type = .tmpfs
            } else if source == "umount" {
                type = .detach
            } else {
                source = Path.absolute(source, relativeTo: currentDirectory)
            }
            let destination = parts.count > 1 ? parts[1] : source
            guard destination.hasPrefix("/") else {
                throw Diagnostic(kind: .invalid, message: "--mount \(entry): the destination must be an absolute path")
            }
            if Path.normalize(destination) == "/" {
                throw Diagnostic(kind: .invalid, message: "--mount \(entry) would mount over the container's root", hint: "the image is the root: mount below it, e.g. /data")
            }
            if type == .squashfs && options.contains("rw") {
                throw Diagnostic(kind: .invalid, message: "--mount \(entry): a squashfs mount is read-only; the flag rw is not possible", hint: "remove rw")
            }
            return Mount(source: source, destination: Path.normalize(destination), type: type, options: options)
        }
    }
}

extension EnvironmentDocument {
    /// The document with its image replaced by a squashfs file.
    func withImage(_ path: String) -> EnvironmentDocument {
        var copy = self
        copy.squash = nil
        copy.image = .local(path: path)
        return copy
    }
}

/// A creator's failure, written into the NAME.lock file it removes, for the tasks that waited on
/// that file: they report the same error and status. Nothing else writes to a lock file, and the
/// file goes away with the last of them (it is no longer in the directory).
enum SharedFailure {
    static let magic = "ns-enter failed "

    static func write(_ fd: Int32, status: ExitStatus, message: String) {
        let text = magic + String(status.rawValue) + "\n" + message
        _ = text.utf8CString.withUnsafeBufferPointer { pwrite(fd, $0.baseAddress, $0.count - 1, 0) }
    }

    static func read(_ fd: Int32) -> (status: ExitStatus, message: String)? {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer.prefix(count), as: UTF8.self)
        guard text.hasPrefix(magic), let newline = text.firstIndex(of: "\n"),
            let code = Int32(text[text.index(text.startIndex, offsetBy: magic.count)..<newline]), let status = ExitStatus(rawValue: code)
        else { return nil }
        return (status, String(text[text.index(after: newline)...]))
    }
}
