import CRuntimeShim
import Glibc
import ToolboxCore

/// The image's entrypoint run once for the container, as Pyxis runs it (spec 3.4): with the
/// arguments `/bin/sh -c 'kill -STOP $$; exit 0'`, so that an entrypoint which prepares the
/// environment and then runs its arguments (`exec "$@"`, as NGC's do) stops itself once it is
/// done. The environment and working directory it stopped with are what the tasks get; the tasks
/// then run their commands directly. Its output is kept, and shown when asked for
/// (`com.pyxis.entrypoint_log`) or when it fails.
public enum EntrypointRun {
    public struct Outcome {
        /// The entrypoint's environment when it stopped.
        public var environment: [String: String]
        /// Its working directory then.
        public var workdir: String?
        /// Its process group, when processes it started (daemons) still run: to be stopped with
        /// the container.
        public var leftGroup: pid_t?
    }

    static let stopCommand = ["/bin/sh", "-c", "kill -STOP $$; exit 0"]

    /// Runs `entrypoint` in the container (this process is in it, after pivot_root). nil when
    /// the image has no /bin/sh to stop with: then the caller runs the entrypoint with each
    /// task's command instead.
    public static func run(
        _ entrypoint: [String], environment: [String: String], workdir: String, showOutput: Bool, timeout: Double
    ) throws(Diagnostic) -> Outcome? {
        guard let first = entrypoint.first else { return nil }
        guard access("/bin/sh", X_OK) == 0 else { return nil }
        // Where the tasks would start (the entrypoint may change it: Pyxis takes its directory).
        try Launcher.changeDirectory(workdir)
        let program = try Launcher.resolve(first, path: environment["PATH"] ?? ContainerEnvironment.defaultPath)
        let described = entrypoint.joined(separator: " ")
        let log = tbx_memfd("ns-enter-entrypoint")
        guard log >= 0 else {
            throw Diagnostic(kind: .system, message: "cannot keep the entrypoint's output: \(SystemCallError("memfd_create").reason)")
        }
        defer { close(log) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if null >= 0 { close(null) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if null >= 0 { posix_spawn_file_actions_adddup2(&actions, null, 0) }
        posix_spawn_file_actions_adddup2(&actions, log, 1)
        posix_spawn_file_actions_adddup2(&actions, log, 2)
        // A process group of its own: what it leaves running is stopped with the container.
        let spawning = GroupSpawnAttributes()
        var arguments = entrypoint + stopCommand
        arguments[0] = first
        var environment = environment
        environment["PWD"] = workdir
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        var child: pid_t = 0
        let spawned = argv.use { pointers in envp.use { posix_spawn(&child, program, &actions, &spawning.attributes, pointers, $0) } }
        guard spawned == 0 else {
            throw Diagnostic(
                kind: spawned == ENOENT ? .commandNotFound : .commandNotExecutable,
                message: "cannot run the image's entrypoint \(described) in the container: \(String(cString: strerror(spawned)))",
                hint: "entrypoint = false in the EDF (ns-enter --no-entrypoint) runs the command without it")
        }
        Timings.mark("entrypoint started")

        // Until it stops itself (WUNTRACED), exits, or the time is up.
        let deadline = now() + timeout
        var status: Int32 = 0
        var pause: UInt32 = 200
        while true {
            let waited = waitpid(child, &status, WUNTRACED | WNOHANG)
            if waited == child { break }
            if waited < 0 && errno != EINTR {
                throw Diagnostic(kind: .system, message: "cannot wait for the image's entrypoint: \(SystemCallError("waitpid").reason)")
            }
            if now() > deadline {
                kill(-child, SIGKILL)
                while waitpid(child, &status, 0) < 0 && errno == EINTR {}
                throw Diagnostic(
                    kind: .commandNotExecutable,
                    message: "the image's entrypoint \(described) did not run its arguments within \(Int(timeout)) s: it was stopped"
                        + outputText(log),
                    hint: "an entrypoint that runs a program of its own instead of its arguments does not suit a job step: "
                        + "entrypoint = false in the EDF (ns-enter --no-entrypoint); the time is the hooks' (--hook-timeout, HOOK_RUN_TIMEOUT)")
            }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
        let stopped = (status & 0xff) == 0x7f
        guard stopped else {
            kill(-child, SIGKILL)  // what it started before it ended
            let code = (status & 0x7f) != 0 ? "was killed by signal \(status & 0x7f)" : "exited with status \((status >> 8) & 0xff)"
            throw Diagnostic(
                kind: .commandNotExecutable,
                message: "the image's entrypoint \(described) \(code) before it ran its arguments" + outputText(log),
                hint: "entrypoint = false in the EDF (ns-enter --no-entrypoint) runs the command without it")
        }
        let captured = readEnvironment(child)
        let directory = readLink("/proc/\(child)/cwd")
        if showOutput { StandardStreams.writeError(String(decoding: contents(log), as: UTF8.self)) }
        // Done: it goes on to `exit 0`.
        kill(child, SIGCONT)
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        Timings.mark("entrypoint ran")
        return Outcome(
            environment: captured ?? environment, workdir: directory, leftGroup: kill(-child, 0) == 0 ? child : nil)
    }

    static func outputText(_ log: Int32) -> String {
        let text = String(decoding: contents(log).suffix(4096), as: UTF8.self)
        if text.isEmpty { return "" }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { "  | " + $0 }
        return "; its output:\n" + (text.hasSuffix("\n") ? lines.dropLast() : lines[...]).joined(separator: "\n")
    }

    static func contents(_ fd: Int32) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while result.count < 1 << 20 {
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if count <= 0 { break }
            result += buffer[0..<count]
            offset += off_t(count)
        }
        return result
    }

    static func readEnvironment(_ pid: pid_t) -> [String: String]? {
        let fd = open("/proc/\(pid)/environ", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [String: String] = [:]
        for entry in contents(fd).split(separator: 0) {
            guard let equals = entry.firstIndex(of: UInt8(ascii: "=")), equals != entry.startIndex else { continue }
            result[String(decoding: entry[..<equals], as: UTF8.self)] = String(decoding: entry[(equals + 1)...], as: UTF8.self)
        }
        return result
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = readlink(path, &buffer, 4096)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
