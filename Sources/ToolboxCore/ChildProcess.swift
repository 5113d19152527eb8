import Glibc

/// A NULL-terminated array of C strings (an argv or envp), freed with the object: use the
/// pointers inside `use`, which keeps the object alive while they are in use.
public final class CStrings {
    let pointers: [UnsafeMutablePointer<CChar>?]

    public init(_ strings: [String]) {
        pointers = strings.map { strdup($0) } + [nil]
    }

    /// `NAME=VALUE` entries, sorted by name.
    public convenience init(environment: [String: String]) {
        self.init(environment.map { "\($0.key)=\($0.value)" }.sorted())
    }

    public func use<Result>(_ body: ([UnsafeMutablePointer<CChar>?]) throws -> Result) rethrows -> Result {
        try withExtendedLifetime(self) { try body(pointers) }
    }

    deinit { pointers.forEach { free($0) } }
}

/// Runs a program to its end: `input` on its stdin, its stdout collected, its stderr either
/// collected (`captureErrors`) or this process's. For the stages the srun wrapper runs and for
/// ldconfig under the library hooks: small documents, one child at a time.
public enum ChildProcess {
    /// A wait status as a shell reports it: the exit status, or 128+N when killed by signal N.
    static func exitStatus(_ status: Int32) -> Int32 {
        (status & 0x7f) != 0 ? 128 + (status & 0x7f) : (status >> 8) & 0xff
    }

    public struct Result: Sendable {
        /// The exit status, or 128+N when killed by signal N; -1 when it could not be started.
        public var status: Int32
        public var output: [UInt8]
        public var errors: [UInt8]
        /// Why it could not be started (status -1).
        public var failure: String?
    }

    /// `timeout`: seconds after which the program is killed (SIGKILL); its result then has status
    /// -1 and says so in `failure`.
    public static func run(
        _ arguments: [String], input: [UInt8] = [], environment: [String: String], captureErrors: Bool = false, inherit: Bool = false,
        timeout: Double? = nil
    ) -> Result {
        if inherit { return runInheriting(arguments, environment: environment) }
        var pipes: [[Int32]] = []
        for _ in 0..<3 {
            var fds: [Int32] = [-1, -1]
            if pipe(&fds) != 0 {
                let reason = String(cString: strerror(errno))
                for pair in pipes { pair.forEach { _ = close($0) } }
                return Result(status: -1, output: [], errors: [], failure: "cannot create a pipe: \(reason)")
            }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            pipes.append(fds)
        }
        let (stdinPipe, stdoutPipe, stderrPipe) = (pipes[0], pipes[1], pipes[2])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        if captureErrors { posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2) }
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        signal(SIGCHLD, SIG_DFL)
        signal(SIGPIPE, SIG_IGN)
        var child: pid_t = 0
        let program = arguments.first ?? ""
        let spawned = argv.use { pointers in envp.use { posix_spawnp(&child, program, &actions, nil, pointers, $0) } }
        _ = close(stdinPipe[0])
        _ = close(stdoutPipe[1])
        _ = close(stderrPipe[1])
        defer {
            _ = close(stdoutPipe[0])
            _ = close(stderrPipe[0])
        }
        guard spawned == 0 else {
            _ = close(stdinPipe[1])
            return Result(status: -1, output: [], errors: [], failure: String(cString: strerror(spawned)))
        }
        // Feed stdin and drain stdout and stderr together, so that no pipe fills up.
        var writer: Int32 = input.isEmpty ? -1 : stdinPipe[1]
        if writer < 0 { _ = close(stdinPipe[1]) }
        var written = 0
        var output: [UInt8] = []
        var errors: [UInt8] = []
        var open: [Int32] = [stdoutPipe[0]] + (captureErrors ? [stderrPipe[0]] : [])
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = timeout.map { monotonicSeconds() + $0 }
        while writer >= 0 || !open.isEmpty {
            var polled = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if writer >= 0 { polled.append(pollfd(fd: writer, events: Int16(POLLOUT), revents: 0)) }
            var wait: Int32 = -1
            if let deadline {
                let left = deadline - monotonicSeconds()
                if left <= 0, let timeout {
                    kill(child, SIGKILL)
                    if writer >= 0 { _ = close(writer) }
                    var status: Int32 = 0
                    while waitpid(child, &status, 0) < 0 && errno == EINTR {}
                    return Result(status: -1, output: output, errors: errors, failure: "did not finish within \(timeout) s and was killed")
                }
                wait = Int32(min(left * 1000 + 1, 60_000))
            }
            let ready = poll(&polled, nfds_t(polled.count), wait)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            if ready == 0 { continue }
            for entry in polled where entry.revents != 0 {
                if entry.fd == writer {
                    let count = input[written...].withUnsafeBytes { Glibc.write(writer, $0.baseAddress, $0.count) }
                    if count > 0 { written += count }
                    if count < 0 && errno != EINTR && errno != EAGAIN || written == input.count {
                        _ = close(writer)
                        writer = -1
                    }
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { Glibc.read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if entry.fd == stdoutPipe[0] { output += buffer[0..<count] } else { errors += buffer[0..<count] }
                } else if count == 0 || errno != EINTR {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        let code = exitStatus(status)
        return Result(status: code, output: output, errors: errors, failure: nil)
    }

    /// Runs a program whose stdout `consume` reads as it comes (a stream too large to hold), its
    /// stdin /dev/null and its stderr this process's; returns its exit status once `consume`
    /// has read to the end. When `consume` throws, the program is killed and the error passed on.
    public static func runStreaming(
        _ arguments: [String], environment: [String: String], consume: (Int32) throws(Diagnostic) -> Void
    ) throws(Diagnostic) -> Int32 {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw Diagnostic(kind: .system, message: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        signal(SIGCHLD, SIG_DFL)
        var child: pid_t = 0
        let program = arguments.first ?? ""
        let spawned = argv.use { pointers in envp.use { posix_spawnp(&child, program, &actions, nil, pointers, $0) } }
        _ = close(fds[1])
        defer { _ = close(fds[0]) }
        guard spawned == 0 else {
            throw Diagnostic(kind: .unavailable, message: "cannot run \(program): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        do {
            try consume(fds[0])
        } catch {
            kill(child, SIGKILL)
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            throw error
        }
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        return exitStatus(status)
    }

    /// Runs a program with this process's stdin, stdout and stderr, to its end. With
    /// `outputToErrors`, its stdin is /dev/null and its stdout goes to this process's stderr: what
    /// a stage whose stdout carries a document does with the chatter of a program it drives.
    public static func runInheriting(_ arguments: [String], environment: [String: String], outputToErrors: Bool = false) -> Result {
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        signal(SIGCHLD, SIG_DFL)
        var child: pid_t = 0
        let program = arguments.first ?? ""
        let spawned = withStandardStreams(outputToErrors: outputToErrors) { actions in
            argv.use { pointers in envp.use { posix_spawnp(&child, program, &actions, nil, pointers, $0) } }
        }
        guard spawned == 0 else { return Result(status: -1, output: [], errors: [], failure: String(cString: strerror(spawned))) }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        let code = exitStatus(status)
        return Result(status: code, output: [], errors: [], failure: nil)
    }
}

extension ChildProcess {
    /// Runs a program with this process's stdin, stdout and stderr to its end, as srun's or
    /// sbatch's stand-in: the signals a job's launcher gets (`signals`) are passed on to it, and
    /// it starts with their default dispositions (none ignored because this process ignores it).
    /// A signal that the terminal sent (to the whole foreground process group, the program
    /// included) is not passed on again: srun takes two ^C within a second as "cancel the step".
    /// `outputToErrors`: stdin /dev/null and stdout on this process's stderr, as `runInheriting`.
    /// `ownGroup`: the program runs in a process group of its own, and every signal goes to the
    /// whole group (a builder's own children, which it leaves running when it is killed, too).
    public static func runForwardingSignals(
        _ arguments: [String], environment: [String: String],
        signals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM], outputToErrors: Bool = false,
        ownGroup: Bool = false
    ) -> Result {
        var waited = sigset_t()
        sigemptyset(&waited)
        for signal in signals + [SIGCHLD] { sigaddset(&waited, signal) }
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &waited, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        Glibc.signal(SIGCHLD, SIG_DFL)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in signals + [SIGPIPE] { sigaddset(&defaults, signal) }
        var mask = previous
        for signal in signals + [SIGCHLD] { sigdelset(&mask, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &mask)
        if ownGroup { posix_spawnattr_setpgroup(&attributes, 0) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (ownGroup ? POSIX_SPAWN_SETPGROUP : 0)))

        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        var child: pid_t = 0
        let program = arguments.first ?? ""
        let spawned = withStandardStreams(outputToErrors: outputToErrors) { actions in
            argv.use { pointers in envp.use { posix_spawnp(&child, program, &actions, &attributes, pointers, $0) } }
        }
        guard spawned == 0 else { return Result(status: -1, output: [], errors: [], failure: String(cString: strerror(spawned))) }
        var status: Int32 = 0
        while true {
            var info = siginfo_t()
            let signal = sigwaitinfo(&waited, &info)
            if signal < 0 { continue }  // EINTR
            if signal == SIGCHLD {
                if waitpid(child, &status, WNOHANG) == child { break }
                continue
            }
            if ownGroup {
                kill(-child, signal)
            } else if info.si_code != 0x80 {
                // SI_KERNEL (0x80): from the terminal (or the kernel), which the program got too.
                kill(child, signal)
            }
        }
        let code = exitStatus(status)
        return Result(status: code, output: [], errors: [], failure: nil)
    }
}

extension ChildProcess {
    /// Spawn file actions for the child's standard streams: this process's, or with
    /// `outputToErrors` stdin on /dev/null and stdout on this process's stderr.
    static func withStandardStreams<T>(outputToErrors: Bool, _ body: (inout posix_spawn_file_actions_t) -> T) -> T {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if outputToErrors {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, 2, 1)
        }
        return body(&actions)
    }
}

/// Seconds on the monotonic clock (for deadlines).
func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
