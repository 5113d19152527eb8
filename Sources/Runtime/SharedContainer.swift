import CRuntimeShim
import Glibc
import ToolboxCore

/// One container shared by the tasks of a job step on a node (as Pyxis does). The task that
/// creates it leaves a small holder process in it; other tasks join the holder's namespaces.
///
/// The holder keeps, as its descriptor 3, a memory file with the container's state (the
/// environment changes and working directory a joining task applies). Every task holds a shared
/// `flock` on that file, through a descriptor it keeps across exec (so do its children); the
/// holder waits for an exclusive lock, which it gets when the last task and its children have
/// exited, and then exits, and with it the container: the namespaces go, their mounts go, and the
/// image's FUSE server ends. Nothing is left behind even when a task is killed.
public enum SharedContainer {
    /// What a joining task reads from the holder: NUL-separated fields (environment variables
    /// cannot contain NUL), read without a JSON decoder because every joining task pays for it:
    /// the format tag, `P0`/`P1` (privileged), `W<workdir>`, `S<name>=<value>` per variable set,
    /// `U<name>` per variable unset, `N0`/`N1` (entrypoint on), `E<arg>` per word of the image's
    /// Entrypoint, `C<arg>` per word of its Cmd: a joining task runs what the first one ran;
    /// `I<path>`: the image, which a task joining by name must name too.
    public struct State: Sendable, Equatable {
        public static let format = "ns-enter-container-6"
        public var environment: ContainerEnvironment
        public var privileged: Bool
        public var entrypoint = false
        public var entrypointCommand: [String] = []
        public var cmd: [String] = []
        /// The image file the container runs ("" when not known).
        public var image = ""
        /// The fingerprint of what the creator was asked to run (its environment document and
        /// image option, see `NamespaceEnter`): a task that brings the same finds the container
        /// without decoding the document again ("" when not known).
        public var request = ""

        public init(
            environment: ContainerEnvironment, privileged: Bool, entrypoint: Bool = false, entrypointCommand: [String] = [],
            cmd: [String] = [], image: String = "", request: String = ""
        ) {
            self.environment = environment
            self.privileged = privileged
            self.entrypoint = entrypoint
            self.entrypointCommand = entrypointCommand
            self.cmd = cmd
            self.image = image
            self.request = request
        }

        public var encoded: [UInt8] {
            var fields = [
                Self.format, privileged ? "P1" : "P0", "W" + environment.workdir, entrypoint ? "N1" : "N0",
                environment.remapPyTorchRanks ? "T1" : "T0",
            ]
            fields += environment.set.keys.sorted().map { "S\($0)=\(environment.set[$0] ?? "")" }
            fields += environment.unset.map { "U" + $0 }
            fields += entrypointCommand.map { "E" + $0 } + cmd.map { "C" + $0 }
            if !image.isEmpty { fields.append("I" + image) }
            if !request.isEmpty { fields.append("R" + request) }
            var bytes: [UInt8] = []
            for field in fields {
                bytes += field.utf8.filter { $0 != 0 }
                bytes.append(0)
            }
            return bytes
        }

        public init?(decoding bytes: [UInt8]) {
            let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            guard fields.first == Self.format else { return nil }
            var environment = ContainerEnvironment()
            var privileged = false
            var entrypoint = false
            var entrypointCommand: [String] = []
            var cmd: [String] = []
            var image = ""
            var request = ""
            for field in fields.dropFirst() where !field.isEmpty {
                let value = String(field.dropFirst())
                switch field.first {
                case "P": privileged = value == "1"
                case "N": entrypoint = value == "1"
                case "T": environment.remapPyTorchRanks = value == "1"
                case "E": entrypointCommand.append(value)
                case "C": cmd.append(value)
                case "I": image = value
                case "R": request = value
                case "W": environment.workdir = value
                case "S":
                    guard let equals = value.firstIndex(of: "=") else { return nil }
                    environment.set[String(value[..<equals])] = String(value[value.index(after: equals)...])
                case "U": environment.unset.append(value)
                default: return nil
                }
            }
            self.init(
                environment: environment, privileged: privileged, entrypoint: entrypoint, entrypointCommand: entrypointCommand,
                cmd: cmd, image: image, request: request)
        }
    }

    static let memfdName = "ns-enter-container"

    /// Makes a task's hold on its container (its open file of the state, with a shared lock)
    /// survive the exec of the command, on a high descriptor: a job script that opens its own
    /// descriptor 3 or 5 (`exec 3>log`) or closes it must not release the container under
    /// itself. The lock belongs to the open file, which the new descriptor shares.
    public static func keepAcrossExec(_ fd: Int32) {
        var limit = rlimit()
        let soft = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(clamping: limit.rlim_cur) : 1024
        // Near the top of the table, below the limit (1024 by default: 1000).
        let floor = max(10, min(soft, 1 << 20) - 24)
        let high = fcntl(fd, F_DUPFD, Int32(clamping: floor))
        if high >= 0 {
            Glibc.close(fd)
            _ = fcntl(high, F_SETFD, 0)
        } else {
            _ = fcntl(fd, F_SETFD, 0)
        }
    }

    /// Publishes the built container: writes its state, takes this task's shared lock, starts the
    /// holder, and records its pid under `name` (when given). Returns the descriptor the task keeps.
    public static func publish(
        _ state: State, records: Int32?, name: String?, helpers: [pid_t] = []
    ) throws(Diagnostic) -> Int32 {
        let fd = tbx_memfd(memfdName)
        if fd < 0 {
            let failure = SystemCallError("memfd_create")
            throw Diagnostic(kind: .system, message: "cannot create the container's state: \(failure.reason)")
        }
        let bytes = state.encoded
        do {
            try System.write(fd, bytes, path: memfdName)
        } catch {
            throw Diagnostic(kind: .system, message: "cannot write the container's state: \(error)")
        }
        if flock(fd, LOCK_SH) != 0 {
            let failure = SystemCallError("flock")
            throw Diagnostic(kind: .system, message: "cannot lock the container's state: \(failure.reason)")
        }
        let holder = startHolder(state: fd, records: records, name: name, helpers: helpers)
        if holder < 0 {
            throw Diagnostic(kind: .system, message: "cannot start the container's holder process: \(SystemCallError("fork", code: -holder).reason)")
        }
        if let records, let name {
            let text = "\(holder)\n"
            let temporary = ".\(name).pid.\(getpid())"
            let file = openat(records, temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
            if file >= 0 {
                try? System.write(file, text, path: temporary)
                System.close(file)
                if renameat(records, temporary, records, name + ".pid") != 0 {
                    let error = SystemCallError("rename", path: name + ".pid")
                    unlinkat(records, temporary, 0)
                    throw Diagnostic(kind: .output, message: "cannot record the shared container \(name): \(error.reason)")
                }
            }
        }
        return fd
    }

    /// Forks the holder (detached: a grandchild in its own session). Returns its pid or -errno.
    static func startHolder(state: Int32, records: Int32?, name: String?, helpers: [pid_t]) -> pid_t {
        var pipe = [Int32](repeating: -1, count: 2)
        if tbx_pipe_cloexec(&pipe) != 0 { return -errno }
        let child = fork()
        if child < 0 {
            let error = errno
            System.close(pipe[0])
            System.close(pipe[1])
            return -error
        }
        if child == 0 {
            setsid()
            let holder = fork()
            if holder == 0 {
                hold(state: state, records: records, name: name, helpers: helpers, ready: pipe[1])
            }
            // The holder reports its pid itself once its descriptor 3 is in place (a task that
            // joins reads /proc/PID/fd/3); a failed fork reports nothing.
            _exit(0)
        }
        System.close(pipe[1])
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        var pid: pid_t = -1
        let count = withUnsafeMutableBytes(of: &pid) { Glibc.read(pipe[0], $0.baseAddress, $0.count) }
        System.close(pipe[0])
        return count == MemoryLayout<pid_t>.size ? pid : -EIO
    }

    /// The holder: its own open file of the state at descriptor 3, everything else closed; waits
    /// for the last task, stops the helpers (fuse-overlayfs, hooks' services), removes the record, exits.
    static func hold(state: Int32, records: Int32?, name: String?, helpers: [pid_t], ready: Int32) -> Never {
        _ = tbx_set_process_name("ns-enter-hold")
        Launcher.resetSignals()
        signal(SIGHUP, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        // Every descriptor this process needs is first moved above 100 (stdio may have been closed
        // and the pipe may sit on 0-2), then placed: 3 = its own open file of the state,
        // 4 = the records directory, 5 = the report pipe; stdio on /dev/null; nothing else.
        let own = Glibc.open("/proc/self/fd/\(state)", O_RDONLY)
        let parked = fcntl(own, F_DUPFD, 100)
        let parkedRecords = records.map { fcntl($0, F_DUPFD, 100) } ?? 100
        let parkedReady = fcntl(ready, F_DUPFD, 100)
        let null = Glibc.open("/dev/null", O_RDWR)
        guard own >= 0, parked >= 0, parkedRecords >= 0, parkedReady >= 0, null >= 0,
            dup2(null, 0) == 0, dup2(null, 1) == 1, dup2(null, 2) == 2, dup2(parked, 3) == 3,
            records == nil || dup2(parkedRecords, 4) == 4, dup2(parkedReady, 5) == 5
        else { _exit(1) }
        if records == nil { Glibc.close(4) }
        tbx_close_from(6)
        var pid = getpid()
        _ = withUnsafeBytes(of: &pid) { Glibc.write(5, $0.baseAddress, $0.count) }
        Glibc.close(5)
        // The exclusive lock is granted once no task holds its shared one.
        while flock(3, LOCK_EX) != 0 && errno == EINTR {}
        System.stop(helpers, groups: true)
        if records != nil, let name {
            // Under the name's lock: its record and, when the record is this holder's, the lock
            // file itself go (a task waiting on the old file sees it gone and opens a new one).
            let lock = openat(4, name + ".lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            if lock >= 0 { flock(lock, LOCK_EX) }
            if let text = readRecord(directory: 4, name: name), Int32(text) == getpid() {
                unlinkat(4, name + ".pid", 0)
                if lock >= 0 { unlinkat(4, name + ".lock", 0) }
            }
        }
        _exit(0)
    }

    static func readRecord(directory: Int32, name: String) -> String? {
        let fd = openat(directory, name + ".pid", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { System.close(fd) }
        guard let bytes = System.readAll(fd, limit: 64), let text = String(validating: bytes, as: UTF8.self) else { return nil }
        return text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first.map(String.init) ?? ""
    }

    /// A running container to join: its state and descriptors of its namespaces.
    public struct Target {
        public var pid: pid_t
        public var state: State
        /// This task's own open file of the state, holding the shared lock (kept across exec).
        public var lock: Int32
        public var userNamespace: Int32
        public var mountNamespace: Int32
    }

    public enum JoinFailure: Error {
        /// No container holder with this pid (gone, or not a holder).
        case gone(String)
        /// The container is shutting down (its last task has exited).
        case stopping
    }

    /// Opens the container whose holder is `pid` and takes this task's shared lock.
    public static func open(holder pid: pid_t) -> Result<Target, JoinFailure> {
        let statePath = "/proc/\(pid)/fd/3"
        guard let target = FileReader.link(statePath) else { return .failure(.gone("no ns-enter container holder has pid \(pid)")) }
        guard target.hasPrefix("/memfd:" + memfdName) else {
            return .failure(.gone("process \(pid) is not an ns-enter container holder"))
        }
        let fd = Glibc.open(statePath, O_RDONLY)
        guard fd >= 0 else {
            let failure = SystemCallError("open")
            return .failure(.gone("cannot open the state of container \(pid): \(failure.reason)"))
        }
        if flock(fd, LOCK_SH | LOCK_NB) != 0 {
            System.close(fd)
            return .failure(.stopping)
        }
        guard let bytes = System.readAll(fd), let state = State(decoding: bytes) else {
            System.close(fd)
            return .failure(.gone("cannot read the state of container \(pid)"))
        }
        let user = Glibc.open("/proc/\(pid)/ns/user", O_RDONLY | O_CLOEXEC)
        let mount = Glibc.open("/proc/\(pid)/ns/mnt", O_RDONLY | O_CLOEXEC)
        guard user >= 0, mount >= 0 else {
            let failure = SystemCallError("open")
            System.close(fd)
            if user >= 0 { System.close(user) }
            if mount >= 0 { System.close(mount) }
            return .failure(.gone("cannot open the namespaces of container \(pid): \(failure.reason)"))
        }
        return .success(Target(pid: pid, state: state, lock: fd, userNamespace: user, mountNamespace: mount))
    }

    /// The holder recorded under `name`, if any.
    public static func recorded(records: Int32, name: String) -> pid_t? {
        readRecord(directory: records, name: name).flatMap { pid_t($0) }
    }
}
