import CRuntimeShim
import FoundationEssentials
import Glibc
import Runtime
import ToolboxCore
import ToolboxModel

/// Where hooks are found, as enroot: a system directory, then the user's.
public struct HookDirectories: Sendable {
    /// `$TOOLBOX_SYSCONF_PATH/hooks.d`, default /etc/toolbox/hooks.d.
    public var system: String
    /// `$ENROOT_CONFIG_PATH/hooks.d`, default `${XDG_CONFIG_HOME:-$HOME/.config}/enroot/hooks.d`.
    public var user: String?

    public init(system: String, user: String?) {
        self.system = system
        self.user = user
    }

    public init(environment: [String: String]) {
        system = (environment["TOOLBOX_SYSCONF_PATH"] ?? "/etc/toolbox") + "/hooks.d"
        if let config = environment["ENROOT_CONFIG_PATH"], !config.isEmpty {
            user = config + "/hooks.d"
        } else if let config = environment["XDG_CONFIG_HOME"], !config.isEmpty {
            user = config + "/enroot/hooks.d"
        } else if let home = environment["HOME"], !home.isEmpty {
            user = home + "/.config/enroot/hooks.d"
        } else {
            user = nil
        }
    }

    /// The hooks to run: executable files named `*.sh` (as enroot runs them: renaming a hook to
    /// `x.sh.disabled` turns it off), not starting with `.`, each directory in lexical (byte)
    /// order, the system directory first.
    public func hooks() -> [String] {
        var result: [String] = []
        for directory in [system] + (user.map { [$0] } ?? []) {
            guard let names = FileReader.names(inDirectory: directory) else { continue }
            for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) where !name.hasPrefix(".") && name.hasSuffix(".sh") {
                let path = directory + "/" + name
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0 else { continue }
                result.append(path)
            }
        }
        return result
    }
}

/// Runs hooks with the enroot protocol: each gets the caller's environment plus `ENROOT_ROOTFS`,
/// `ENROOT_PID`, `ENROOT_MOUNTS` (an fstab file to append to), `ENROOT_ENVIRON` (a KEY=VALUE
/// file, holding the container's variables so far, to append to) and every annotation as
/// `OCI_ANNOTATION_<key with . replaced by __>`. A hook that exits non-zero, or runs longer than
/// the timeout, stops the run.
public struct HookRunner {
    public var hooks: [String]
    public var rootfs: String
    public var pid: Int32
    public var annotations: [String: String]
    public var environment: [String: String]
    /// The container's variables so far (written to ENROOT_ENVIRON before the first hook).
    public var containerVariables: [(String, String)]
    public var timeout: Double
    /// The option that raises the limit, for the message of a hook that ran out of time.
    public var timeoutOption = "--hook-timeout"

    /// The tmpfs mounts the hooks' enroot-mount calls made are listed (mount ids, one per line)
    /// in this file of the state directory: later calls, and hook-run's own mounts after the last
    /// hook, may make mount points in them.
    static func writableMountsFile(state: String) -> String { state + "/.writable-mounts" }

    /// Lets `rootfs` create and write in the mounts an earlier enroot-mount call recorded.
    public static func allowRecordedWrites(_ rootfs: RootFilesystem, state: String) {
        if let text = try? FileReader.readText(writableMountsFile(state: state)) {
            rootfs.allowWrites(in: text.split(separator: "\n").joined(separator: ","))
        }
    }

    /// Records the mounts (ids) an enroot-mount call made, for the ones after it.
    public static func recordWrites(_ mounts: Set<UInt64>, state: String) {
        guard !mounts.isEmpty else { return }
        try? FileWriter.append(mounts.map { "\($0)\n" }.joined(), to: writableMountsFile(state: state), creating: true)
    }

    /// enroot's "no": n, no, N, No, NO, f, false, F, False, FALSE (enroot.in, config::fini).
    static func saysNo(_ value: String) -> Bool {
        ["n", "no", "N", "No", "NO", "f", "false", "F", "False", "FALSE"].contains(value)
    }

    /// The directory of the toolbox's enroot-compatible common.sh: beside the site's hooks
    /// ($TOOLBOX_SYSCONF_PATH/hooks.d/lib/enroot), else where contrib/install.sh puts it
    /// (PREFIX/share/toolbox/hooks.d/lib/enroot beside PREFIX/bin), else in the source tree a
    /// development build runs from.
    static func enrootLibrary(environment: [String: String], hookRun: String?) -> String? {
        var candidates = [(environment["TOOLBOX_SYSCONF_PATH"] ?? "/etc/toolbox") + "/hooks.d/lib/enroot"]
        if let hookRun, let slash = hookRun.lastIndex(of: "/") {
            let bin = String(hookRun[..<slash])
            candidates.append(bin + "/../share/toolbox/hooks.d/lib/enroot")
            candidates.append(bin + "/../../../contrib/hooks.d/lib/enroot")
        }
        return candidates.first { access($0 + "/common.sh", R_OK) == 0 }.map(Path.normalize)
    }

    /// The limit: the option's value, else HOOK_RUN_TIMEOUT, else 60 seconds; zero, negative and
    /// unreadable values are errors (every hook would be killed at once, or the variable ignored).
    public static func timeout(option: Double?, optionName: String, environment: [String: String]) throws(Diagnostic) -> Double {
        if let option {
            guard option > 0, option.isFinite else {
                throw Diagnostic(kind: .usage, message: "\(optionName) must be a number of seconds above 0, not \(option)")
            }
            return option
        }
        guard let text = environment["HOOK_RUN_TIMEOUT"], !text.isEmpty else { return 60 }
        guard let seconds = Double(text), seconds > 0, seconds.isFinite else {
            throw Diagnostic(
                kind: .invalid, message: "HOOK_RUN_TIMEOUT is '\(text)', not a number of seconds above 0",
                hint: "set it to the seconds a hook may run (default 60), or unset it")
        }
        return seconds
    }
    /// The hook-run executable, linked as enroot-mount for the hooks (nil: none); by default
    /// the one installed beside the running command.
    public var hookRunProgram: String? = FileReader.sibling("hook-run")
    /// toolbox-hook, put on the hooks' PATH when it is not there (nil: none); by default the
    /// one installed beside the running command.
    public var toolboxHookProgram: String? = FileReader.sibling("toolbox-hook")
    /// HOOK_RUN_STATE_DIR: a directory for files the hooks' services need, which lives as long as
    /// the container (ns-enter: on the container's private tmpfs); nil: one removed after the run.
    public var stateDirectory: String?
    /// The mounts of the root file system that the hooks' helpers (enroot-mount, toolbox-hook)
    /// may create files in besides the root itself: HOOK_RUN_WRITABLE_MOUNTS.
    public var writableMounts: Set<UInt64> = []

    public init(
        hooks: [String], rootfs: String, pid: Int32, annotations: [String: String], environment: [String: String],
        containerVariables: [(String, String)], timeout: Double
    ) {
        self.hooks = hooks
        self.rootfs = rootfs
        self.pid = pid
        self.annotations = annotations
        self.environment = environment
        self.containerVariables = containerVariables
        self.timeout = timeout
    }

    public static func annotationVariable(_ key: String) -> String {
        "OCI_ANNOTATION_" + key.replacing(".", with: "__")
    }

    /// Runs every hook; then parses (and with `mounter`, performs) the mounts they asked for.
    public func run(mounter: FstabMounter?) throws(Diagnostic) -> HookReport {
        // Each annotation must reach the hooks as a variable of its own.
        var variableOf: [String: String] = [:]
        for key in annotations.keys.sorted() {
            guard !key.isEmpty, !key.contains(where: { $0 == "=" || $0 == "\0" }) else {
                throw Diagnostic(
                    kind: .invalid, key: "annotations", message: "the annotation name \"\(key)\" cannot be a variable name (OCI_ANNOTATION_...)",
                    hint: "annotation names are dot-separated words, e.g. com.hooks.ssh.enabled")
            }
            let variable = Self.annotationVariable(key)
            if let other = variableOf[variable] {
                throw Diagnostic(
                    kind: .invalid, key: "annotations", message: "the annotations \"\(other)\" and \"\(key)\" both become \(variable) for the hooks",
                    hint: "keep one of them")
            }
            variableOf[variable] = key
        }
        var report = HookReport(rootfs: rootfs)
        let work = try WorkDirectory(base: environment["TMPDIR"] ?? "/tmp")
        defer { work.remove() }
        let mountsFile = work.path + "/fstab"
        let environFile = work.path + "/environ"
        let servicesFile = work.path + "/services"
        let deferredFile = work.path + "/deferred"
        let initial = containerVariables.map { "\($0.0)=\($0.1)\n" }.joined()
        let failure = { (code: Int32) in
            Diagnostic(kind: .output, message: "cannot write the hooks' files in \(work.path): \(String(cString: strerror(code)))")
        }
        try FileWriter.writeFile(mountsFile, [], failure: failure)
        try FileWriter.writeFile(environFile, Array(initial.utf8), failure: failure)
        try FileWriter.writeFile(servicesFile, [], failure: failure)
        try FileWriter.writeFile(deferredFile, [], failure: failure)
        let state = stateDirectory ?? work.path + "/state"
        if mkdir(state, 0o700) != 0 && errno != EEXIST {
            throw Diagnostic(kind: .output, message: "cannot create the hooks' state directory \(state): \(SystemCallError("mkdir").reason)")
        }
        var variables = environment
        // As enroot does before its hooks run: an ENROOT_ setting that says no is not set at all
        // (enroot's hooks test them with -n: ENROOT_MOUNT_HOME=n must not mount the home).
        for (name, value) in environment where name.hasPrefix("ENROOT_") && Self.saysNo(value) { variables[name] = nil }
        // enroot's hooks source ${ENROOT_LIBRARY_PATH}/common.sh: the toolbox's own version of it.
        if variables["ENROOT_LIBRARY_PATH"] == nil, let library = Self.enrootLibrary(environment: environment, hookRun: hookRunProgram) {
            variables["ENROOT_LIBRARY_PATH"] = library
        }
        for (key, value) in annotations { variables[Self.annotationVariable(key)] = value }
        variables["ENROOT_ROOTFS"] = rootfs
        variables["ENROOT_PID"] = String(pid)
        variables["ENROOT_MOUNTS"] = mountsFile
        variables["ENROOT_ENVIRON"] = environFile
        variables["TOOLBOX_HOOK_PIDS"] = servicesFile
        variables["HOOK_RUN_STATE_DIR"] = state
        variables["HOOK_RUN_DEFERRED"] = deferredFile
        variables["HOOK_RUN_WRITABLE_MOUNTS"] = writableMounts.sorted().map(String.init).joined(separator: ",")
        // hook-run alone performs no mounts: enroot-mount and toolbox-hook then only record.
        if mounter == nil { variables["HOOK_RUN_ENROOT_MOUNT"] = "record" }
        // Hooks written for enroot pipe fstab lines into enroot-mount: when none is installed,
        // hook-run serves as it, through a link on the hooks' PATH; toolbox-hook likewise.
        let path = variables["PATH"] ?? "/usr/bin:/bin"
        var linked = false
        for (name, program) in [("enroot-mount", hookRunProgram), ("toolbox-hook", toolboxHookProgram)]
        where !path.split(separator: ":").contains(where: { access(String($0) + "/" + name, X_OK) == 0 }) {
            guard let program, mkdir(work.path + "/bin", 0o700) == 0 || errno == EEXIST else { continue }
            if symlink(program, work.path + "/bin/" + name) == 0 { linked = true }
        }
        if linked { variables["PATH"] = work.path + "/bin:" + path }
        let envp = CStrings(environment: variables)
        // Should this process be killed outright while the hooks run, the guard stops what they
        // started (their process groups, the services they registered): nothing else could.
        var guardPid: Int32 = 0
        let guardFD = tbx_guard_start(servicesFile, work.path, &guardPid)
        defer { tbx_guard_release(guardFD, guardPid) }

        do throws(Diagnostic) {
            for hook in hooks {
                let conditions = HookConditions.of(hook)
                let holds = conditions.hold(annotations: annotations, environment: environment) {
                    // The container's variables so far: earlier hooks may have added some.
                    var current: [String: String] = [:]
                    for (name, value) in EnvironFile.parse((try? FileReader.readText(environFile)) ?? "") { current[name] = value }
                    return current
                }
                guard holds else {
                    report.hooks.append(HookReport.Hook(path: hook, status: 0, milliseconds: 0, skipped: true))
                    continue
                }
                let started = Date()
                let status = try runOne(hook, envp: envp, guardFD: guardFD)
                report.hooks.append(HookReport.Hook(path: hook, status: status, milliseconds: Int(Date().timeIntervalSince(started) * 1000)))
            }
        } catch {
            // The container will not start: the services started so far stop now.
            System.stop(Self.services(servicesFile), groups: true)
            throw error
        }
        report.services = Self.services(servicesFile)
        // The container's variables after the last hook, for what starts shells later (the SSH
        // hook's logins): HOOK_RUN_STATE_DIR/environ, NAME=VALUE lines, rewritten in place (a
        // hook may have bound it into the container).
        let final = EnvironFile.parse((try? FileReader.readText(environFile)) ?? "").filter { !$0.1.contains("\n") }
        do throws(Diagnostic) {
            try FileWriter.writeFile(state + "/environ", Array(final.map { "\($0.0)=\($0.1)\n" }.joined().utf8), failure: failure)
        } catch {
            System.stop(report.services, groups: true)
            throw error
        }

        let mountsText = (try? FileReader.readText(mountsFile)) ?? ""
        report.mounts = try Fstab.parse(mountsText, origin: "ENROOT_MOUNTS", environment: environment)
        if mounter == nil {
            // Without --apply: what --apply would refuse is refused here too.
            do throws(Diagnostic) {
                for mount in report.mounts { try FstabMounter.check(mount) }
            } catch {
                System.stop(report.services, groups: true)
                throw error
            }
        }
        if let mounter {
            // The tmpfs mounts the hooks made through enroot-mount: mount points may go there.
            Self.allowRecordedWrites(mounter.rootfs, state: state)
            do throws(Diagnostic) {
                for index in report.mounts.indices {
                    report.mounts[index].performed = try mounter.perform(report.mounts[index])
                }
                // One refresh of the image's linker cache for all the library hooks, after the
                // mounts (a mounted directory may hold libraries).
                if try LibraryInjector.runDeferred(deferredFile, root: rootfs, timeout: timeout) { report.linkerCacheRefreshed = true }
            } catch {
                System.stop(report.services, groups: true)
                throw error
            }
        }
        // The whole file, compared with what it held before: hooks may append to it or rewrite it.
        let environText = (try? FileReader.readText(environFile)) ?? ""
        var before: [String: String] = [:]
        for (name, value) in containerVariables { before[name] = value }
        report.env = EnvironFile.parse(environText).filter { before[$0.0] != $0.1 }
            .map { HookReport.Variable(name: $0.0, value: $0.1) }
        return report
    }

    /// Runs one hook in its own process group, its stdout sent to our stderr and its stderr
    /// collected; returns 0 or throws.
    func runOne(_ hook: String, envp: CStrings, guardFD: Int32 = -1) throws(Diagnostic) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        let spawning = GroupSpawnAttributes()
        var child: pid_t = 0
        func spawn(_ command: [String]) -> Int32 {
            let argv = CStrings(command)
            return argv.use { arguments in
                envp.use { variables in posix_spawn(&child, command[0], &actions, &spawning.attributes, arguments, variables) }
            }
        }
        var spawned = spawn([hook])
        // No #! line: a shell script, as bash (which enroot runs its hooks from) takes it.
        if spawned == ENOEXEC {
            spawned = spawn([access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh", hook])
        }
        if spawned != 0 {
            throw Diagnostic(kind: .hook, message: "hook \(hook) cannot be run: \(SystemCallError("exec", code: spawned).reason)")
        }
        tbx_guard_watch(guardFD, child)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        // Woken when the hook exits (a pidfd), else by polling: hooks take milliseconds, and a
        // late look at a finished hook would add to every container's start.
        let pidfd = tbx_pidfd_open(child)
        defer { if pidfd >= 0 { close(pidfd) } }
        var pause: useconds_t = 50
        while true {
            let result = waitpid(child, &status, WNOHANG)
            if result == child { break }
            if result < 0 {
                let error = SystemCallError("waitpid")
                if error.code == EINTR { continue }
                kill(-child, SIGKILL)
                throw Diagnostic(kind: .hook, message: "cannot wait for hook \(hook): \(error.reason)")
            }
            if Date() > deadline {
                kill(-child, SIGKILL)
                kill(child, SIGKILL)
                while waitpid(child, &status, 0) < 0 && errno == EINTR {}
                throw Diagnostic(
                    kind: .hook, message: "hook \(hook) did not finish within \(Self.seconds(timeout)) and was killed",
                    hint: "a hook must not wait for anything; raise the limit with \(timeoutOption) (or HOOK_RUN_TIMEOUT)")
            }
            if pidfd >= 0 {
                var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                let left = Int32(max(1, min(1000, deadline.timeIntervalSinceNow * 1000 + 1)))
                _ = poll(&entry, 1, left)
            } else {
                usleep(pause)
                pause = min(pause * 2, 2_000)
            }
        }
        // Whatever the hook left running in its group goes with it.
        kill(-child, SIGKILL)
        if (status & 0x7f) != 0 {
            throw Diagnostic(kind: .hook, message: "hook \(hook) was killed by signal \(status & 0x7f)")
        }
        let code = (status >> 8) & 0xff
        if code != 0 {
            throw Diagnostic(kind: .hook, message: "hook \(hook) exited with status \(code)", hint: "its messages are above")
        }
        return code
    }

    /// The pids the hooks' services registered (lines of TOOLBOX_HOOK_PIDS).
    static func services(_ file: String) -> [Int32] {
        let text = (try? FileReader.readText(file)) ?? ""
        return text.split(whereSeparator: { $0 == "\n" || $0 == " " }).compactMap { Int32($0) }.filter { $0 > 1 }
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}

/// A private temporary directory, removed with its files.
struct WorkDirectory {
    var path: String

    init(base: String) throws(Diagnostic) {
        var template = Array((base + "/hook-run.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            let failure = SystemCallError("mkdtemp")
            throw Diagnostic(kind: .output, message: "cannot create a directory in \(base): \(failure.reason)")
        }
        path = String(cString: made)
    }

    func remove() {
        FileWriter.removeTree(path)
    }
}
