import ArgumentParser
import CRuntimeShim
import Glibc
import Hooks
import Runtime
import ToolSupport
import ToolboxCore

/// `toolbox-hook`: what the site hooks of contrib/hooks.d do that a shell script cannot do safely
/// (every path resolved inside the container, ELF sonames read, the ABI checked): inject host
/// libraries, start a service inside the container. hook-run puts it on the hooks' PATH.
public struct ToolboxHook: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "toolbox-hook",
        abstract: "Helpers for site hooks: inject host libraries into a container, start a service inside it, read the GPU driver's versions.",
        discussion: """
            Run by hooks (under hook-run or ns-enter, which put it on their PATH); the site \
            hooks of contrib/hooks.d use it. --root defaults to $ENROOT_ROOTFS; files are \
            created only on the root file system and the mounts named by \
            $HOOK_RUN_WRITABLE_MOUNTS (ns-enter's tmpfs mounts). Under hook-run without --apply \
            nothing is mounted or started: the mounts are added to $ENROOT_MOUNTS, for the \
            report.
            """,
        version: toolboxVersion,
        subcommands: [Inject.self, Service.self, DriverVersions.self]
    )

    public init() {}

    static func root(_ option: String?) throws(Diagnostic) -> RootFilesystem {
        let environment = ProcessEnvironment.current
        guard let path = option ?? environment["ENROOT_ROOTFS"], !path.isEmpty else {
            throw Diagnostic(kind: .invalid, message: "no root file system", hint: "give --root, or run this from a hook (ENROOT_ROOTFS)")
        }
        let context = ProcessContext(environment: environment, currentDirectory: FileReader.currentDirectory())
        let rootfs = try RootFilesystem(path: try Inputs.rootDirectory(path, context: context))
        rootfs.allowWrites(in: environment["HOOK_RUN_WRITABLE_MOUNTS"])
        return rootfs
    }

    static var recording: Bool { ProcessEnvironment.current["HOOK_RUN_ENROOT_MOUNT"] == "record" }

    static func say(_ text: String) { StandardStreams.writeError("toolbox-hook: \(text)\n") }
}

extension ABICompatibility: ExpressibleByArgument {}

extension ToolboxHook {
    public struct Inject: ParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "inject",
            abstract: "Bring host shared libraries into the container and refresh its linker cache.",
            discussion: """
                Each LIBRARY is a host ELF shared library file (links followed) or a name looked up in the host's \
                linker cache (libcuda.so finds libcuda.so.1; only the machine's own ABI). A \
                library the image already has (same soname, in its linker cache, library \
                directories or those its linker configuration names) is replaced: the host file is bind-mounted over the image's (and a \
                link of the name it was looked up by, libcuda.so, made beside it where the image \
                has none). One it \
                lacks is bind-mounted into /opt/toolbox/NAME/lib with its soname link, and that \
                directory is put first in the image's linker configuration \
                (/etc/ld.so.conf.d/000-toolbox-NAME.conf). Then the image's linker cache is \
                refreshed with the host's glibc ldconfig -X -r ROOT; under hook-run \
                ($HOOK_RUN_DEFERRED set) that is left to hook-run, which runs it once after the \
                last hook (and toolbox-hook service before it starts a program), instead of \
                once per library hook. An image without glibc's linker \
                configuration (musl: Alpine) gets LD_LIBRARY_PATH in $ENROOT_ENVIRON instead, and \
                a note. glibc's own libraries (libc.so.6, libm.so.6, ...) are never injected. \
                --dependencies and --needed-by add the libraries that the given libraries or \
                programs load (found as the loader would: RUNPATH, then the host's linker \
                cache), only where the image lacks them. --compat32 does the same with the 32-bit \
                libraries (the host cache's i386 entries), matched against the image's 32-bit \
                ones and added into /opt/toolbox/NAME/lib32.

                --abi checks each library against the image's library of the same name first (as \
                Sarus' MPI hook, on the version numbers of the file names): major: the major \
                numbers equal; full: major, and a host minor below the image's only warns; \
                strict: major and minor equal (or neither given). Libraries are matched by the \
                stem of their file names (libmpi.so.12.5.5: libmpi). The image must have at least \
                one of the libraries; one it lacks is added.

                Exit status:
                \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .unavailable, .osError, .ioError], meanings: [
                    .invalidInput: "an incompatible library (the --abi check), or a file that is not a library",
                    .noInput: "a library, or the image's counterpart of one, not found",
                    .unavailable: "no glibc ldconfig on the host",
                    .osError: "a mount or the refresh of the image's linker cache failed",
                    .ioError: "a file of the hook protocol could not be written",
                ]))
                """
        )

        @Option(help: "The container's root file system (default: $ENROOT_ROOTFS).", completion: .directory)
        var root: String?

        @Option(help: "The hook's name (the directory /opt/toolbox/NAME/lib in the container).")
        var name: String

        @Option(name: .customLong("ldcache"), help: "The host's linker cache, for libraries given by name.", completion: .file())
        var hostCache: String = "/etc/ld.so.cache"

        @Flag(help: "Skip names that are not in the host's linker cache instead of failing.")
        var optional = false

        @Flag(name: .customLong("if-missing"), help: "Only add libraries the image lacks; never replace the image's.")
        var ifMissing = false

        @Flag(help: "Also add the libraries these load (RUNPATH, then the host's linker cache), when the image lacks them.")
        var dependencies = false

        @Option(name: .customLong("needed-by"), help: "Add the libraries this host program loads, when the image lacks them (repeatable).", completion: .file())
        var neededBy: [String] = []

        @Option(help: "Check against the image's library of the same name first: major, full or strict.")
        var abi: ABICompatibility?

        @Flag(help: "The 32-bit versions (i386 on x86_64), added into /opt/toolbox/NAME/lib32.")
        var compat32 = false

        @Option(help: "The host's glibc ldconfig (default: $TOOLBOX_LDCONFIG, else /sbin/ldconfig.real or /sbin/ldconfig).", completion: .file())
        var ldconfig: String?

        @Flag(name: .shortAndLong, help: "Say what is replaced, added and skipped.")
        var verbose = false

        @Argument(help: "Host library files or names.", completion: .file())
        var libraries: [String] = []

        public init() {}

        public func validate() throws {
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
            guard !name.isEmpty, !name.hasPrefix("."), name.allSatisfy({ allowed.contains($0) }) else {
                throw ValidationError("--name: use letters, digits, '.', '_' and '-' (not starting with '.')")
            }
        }

        public func run() throws {
            let environment = ProcessEnvironment.current
            for program in neededBy where access(program, R_OK) != 0 {
                throw Diagnostic(kind: .notFound, message: "--needed-by \(program): no such file on this host")
            }
            // Only what is not a file is refused: a script or a static program loads no
            // libraries (nothing to add, no error; a site's srun may be a script).
            for program in neededBy where FileReader.kind(of: program) != .regularFile {
                throw Diagnostic(
                    kind: .invalid, message: "--needed-by \(program): not a file",
                    hint: "name a host program or library whose libraries the container needs")
            }
            var injector = LibraryInjector(rootfs: try ToolboxHook.root(root), name: name)
            injector.placement = ifMissing ? .ifMissing : .replaceOrAdd
            injector.abi = abi
            injector.hostCache = hostCache
            injector.optional = optional
            injector.dependencies = dependencies
            injector.neededBy = neededBy
            injector.compat32 = compat32
            injector.ldconfig = ldconfig ?? environment["TOOLBOX_LDCONFIG"].flatMap { $0.isEmpty ? nil : $0 }
            injector.environFile = environment["ENROOT_ENVIRON"]
            injector.recordFile = ToolboxHook.recording ? environment["ENROOT_MOUNTS"] : nil
            injector.deferredFile = environment["HOOK_RUN_DEFERRED"].flatMap { $0.isEmpty ? nil : $0 }
            injector.verbose = verbose
            injector.say = ToolboxHook.say
            let outcome = try injector.inject(libraries)
            if verbose {
                for skipped in outcome.skipped { ToolboxHook.say("skipped \(skipped)") }
            }
        }
    }

    public struct Service: ParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "service",
            abstract: "Start a program inside the container that runs as long as the container.",
            discussion: """
                COMMAND runs with the container's root as its root (chroot ROOT, working \
                directory /), in a session of its own, without the hooks' capabilities, with \
                this process's environment; stdin is /dev/null, stdout and stderr go to --log (a \
                path inside the container) or /dev/null. Its pid is printed and added to \
                $TOOLBOX_HOOK_PIDS: ns-enter stops it and its process group (SIGTERM, SIGKILL two \
                seconds later) when the container's last task has ended, or when a later hook \
                fails. COMMAND is \
                found on PATH inside the container.

                Exit status:
                \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .osError, .commandNotExecutable, .commandNotFound], meanings: [
                    .invalidInput: "invalid input: a --log that is not a regular file, a bad root",
                    .noInput: "the container's root or --log's directory not found",
                    .osError: "the service could not be started, or exited right after it started",
                    .commandNotExecutable: "COMMAND cannot be executed",
                    .commandNotFound: "COMMAND was not found on the container's PATH",
                ]))
                """
        )

        @Option(help: "The container's root file system (default: $ENROOT_ROOTFS).", completion: .directory)
        var root: String?

        @Option(help: "A file inside the container for the program's output (default: none).")
        var log: String?

        @Argument(parsing: .postTerminator, help: "The program and its arguments, after --.")
        var command: [String] = []

        public init() {}

        public func validate() throws {
            if command.isEmpty { throw ValidationError("give the program after --") }
        }

        public func run() throws {
            let rootfs = try ToolboxHook.root(root)
            let shown = command.joined(separator: " ")
            if ToolboxHook.recording {
                ToolboxHook.say("note: not started (hook-run without --apply): \(shown)")
                return
            }
            if let log {
                // Checked here, as the container sees it: the service's own open falls back to
                // /dev/null (and must not block on a fifo the image put there).
                let parent = log.split(separator: "/").dropLast().joined(separator: "/")
                let exists = rootfs.exists(log)
                if exists ? rootfs.read(log, limit: 0) == nil : !rootfs.exists("/" + parent) {
                    throw Diagnostic(
                        kind: .invalid,
                        message: "--log \(log): " + (exists ? "not a regular file in the container" : "no directory /\(parent) in the container"),
                        hint: "give a file in an existing directory of the container (e.g. /tmp/NAME.log)")
                }
            }
            // A service may need the libraries the hooks before it added: their linker cache
            // refresh, left to hook-run, is done now.
            if let deferred = ProcessEnvironment.current["HOOK_RUN_DEFERRED"], !deferred.isEmpty {
                try LibraryInjector.runDeferred(deferred, root: rootfs.path)
            }
            let pid = CStrings(command).use { argv in
                CStrings(environment: ProcessEnvironment.current).use { envp in
                    tbx_spawn_service(rootfs.path, argv, envp, log)
                }
            }
            if pid < 0 {
                let error = SystemCallError("exec", code: -pid)
                let kind: Diagnostic.Kind = -pid == ENOENT ? .commandNotFound : (-pid == EACCES ? .commandNotExecutable : .system)
                throw Diagnostic(kind: kind, message: "cannot start \(shown) in the container: \(error.reason)")
            }
            // A service runs in the foreground for the container's life: one that is gone at once
            // (a bad option, a missing file) failed, and the start must say so.
            for _ in 0..<10 where System.running(pid) { usleep(5_000) }
            if !System.running(pid) {
                // What it forked before it exited goes too (its session's process group).
                System.stop([pid], groups: true)
                // Its last words, from the log in the container (which goes with a failed start).
                var output = ""
                if let log {
                    let text = rootfs.read(log, limit: 1 << 20).map { String(decoding: $0, as: UTF8.self) } ?? ""
                    let last = text.split(separator: "\n").suffix(3).map { "  | " + $0 }.joined(separator: "\n")
                    output = last.isEmpty ? " (no output in \(log))" : "; its last output (\(log) in the container):\n" + last
                }
                throw Diagnostic(
                    kind: .system, message: "\(shown) exited right after it started\(output)",
                    hint: "a service must stay in the foreground (no daemon mode); check its options and what it needs in the container")
            }
            if let file = ProcessEnvironment.current["TOOLBOX_HOOK_PIDS"], !file.isEmpty {
                do {
                    try FileWriter.append("\(pid)\n", to: file)
                } catch {
                    System.stop([pid], groups: true)
                    throw Diagnostic(kind: .output, message: "cannot register \(shown) in \(file); stopped it")
                }
            } else {
                ToolboxHook.say("note: \(shown) (pid \(pid)) runs outside ns-enter's watch: nothing stops it")
            }
            try StandardStreams.writeOutput("\(pid)\n")
        }
    }

    public struct DriverVersions: ParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "driver-versions",
            abstract: "Print the host's NVIDIA driver version and the CUDA version it supports.",
            discussion: """
                Finds libcuda.so.1 in the host's linker cache, loads it and calls \
                cuDriverGetVersion, as libnvidia-container does for NVIDIA_REQUIRE_cuda. Prints \
                "driver VERSION" (the library's file name: libcuda.so.VERSION; else the kernel module's, else unknown) and "cuda \
                MAJOR.MINOR", one per line. The NVIDIA hook checks NVIDIA_REQUIRE_* with them.

                Exit status:
                \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .osError], meanings: [
                    .invalidInput: "a linker cache that cannot be read as one",
                    .noInput: "no libcuda.so.1 in the host's linker cache, or the cache not found",
                    .osError: "libcuda.so.1 could not be loaded or did not answer",
                ]))
                """
        )

        @Option(help: "The host's linker cache.", completion: .file())
        var ldcache = "/etc/ld.so.cache"

        public init() {}

        public func run() throws {
            let versions = try NvidiaDriver.versions(ldcache: ldcache)
            try StandardStreams.writeOutput("driver \(versions.driver)\ncuda \(versions.cuda)\n")
        }
    }
}
