import CRuntimeShim
import Glibc
import ToolboxCore

/// The last step of ns-enter: the command's arguments, its working directory, its environment,
/// and exec. After exec the command is the process: its exit status and signals are the job's.
public enum Launcher {
    /// The program and arguments to run: with the entrypoint on, the image's Entrypoint followed
    /// by the command (or by the image's Cmd when no command is given); off, the command (or Cmd).
    public static func arguments(command: [String], entrypoint: Bool, config: (entrypoint: [String]?, cmd: [String]?))
        throws(Diagnostic) -> [String]
    {
        let base = command.isEmpty ? (config.cmd ?? []) : command
        let result = entrypoint ? (config.entrypoint ?? []) + base : base
        if result.isEmpty {
            throw Diagnostic(
                kind: .invalid, message: "no command to run: none was given and the image has no Cmd",
                hint: "give the command after --, e.g. ns-enter --environment env.json -- bash")
        }
        return result
    }

    /// Changes to `workdir`, resets signal dispositions and the signal mask (a job step's
    /// launcher may block some), and executes the program, found through the container's PATH.
    public static func exec(_ arguments: [String], environment: [String: String], workdir: String) throws(Diagnostic) -> Never {
        try changeDirectory(workdir)
        let program = try resolve(arguments[0], path: environment["PATH"] ?? ContainerEnvironment.defaultPath)
        // PWD says where the command starts, not where ns-enter was started on the host.
        var environment = environment
        environment["PWD"] = workdir
        resetSignals()
        _ = tbx_clear_ambient_capabilities()
        Timings.mark("exec")
        let argv = CStrings(arguments)
        let envp = CStrings(environment: environment)
        argv.use { arguments in envp.use { variables in _ = execve(program, arguments, variables) } }
        var error = SystemCallError("execve", path: program)
        if error.code == ENOEXEC {
            // A script without #!: run by /bin/sh, as execvp does.
            let shell = CStrings(["/bin/sh", program] + arguments.dropFirst())
            shell.use { arguments in envp.use { variables in _ = execve("/bin/sh", arguments, variables) } }
            error = SystemCallError("execve", path: program, code: ENOEXEC)
        }
        switch error.code {
        case ENOENT:
            if let interpreter = interpreterLine(program) {
                throw Diagnostic(
                    kind: .commandNotFound, message: "cannot run \(program) in the container: its interpreter \(interpreter) is not in the image",
                    hint: interpreter.hasSuffix("\\r")
                        ? "the script has Windows line ends (CRLF): convert it (dos2unix, or sed -i 's/\\r$//')"
                        : "install the interpreter in the image, or change the script's #! line")
            }
            throw Diagnostic(
                kind: .commandNotFound, message: "cannot run \(program) in the container: \(error.reason)",
                hint: "the program exists but its dynamic loader (or a library it names) is missing in the image")
        case ENOEXEC:
            throw Diagnostic(
                kind: .commandNotExecutable, message: "cannot run \(program) in the container: \(error.reason)",
                hint: "not a program for this machine, or a script without #! (which /bin/sh would run, and the image has none)")
        case EACCES:
            var info = stat()
            if stat(program, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
                throw Diagnostic(kind: .commandNotExecutable, message: "cannot run \(program) in the container: it is a directory")
            }
            throw Diagnostic(
                kind: .commandNotExecutable, message: "cannot run \(program) in the container: \(error.reason)",
                hint: "the file is not executable (chmod +x), or a mount with noexec holds it")
        default:
            throw Diagnostic(
                kind: .commandNotExecutable, message: "cannot run \(program) in the container: \(error.reason)",
                hint: error.code == EIO ? damagedImageHint : nil)
        }
    }

    /// The interpreter a script's `#!` line names (a carriage return shown as \\r), if it has one.
    static func interpreterLine(_ program: String) -> String? {
        let fd = open(program, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 2, buffer[0] == UInt8(ascii: "#"), buffer[1] == UInt8(ascii: "!") else { return nil }
        let line = buffer[2..<count].prefix { $0 != UInt8(ascii: "\n") }
        let word = line.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        guard !word.isEmpty else { return nil }
        return word.split(separator: UInt8(ascii: "\r"), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\\r")
    }

    static let damagedImageHint =
        "the container's image may be damaged (reading it failed): `unsquashfs -l IMAGE` checks it; "
        + "build it again (img-squash --force, or remove it from the image store) or copy it again"

    /// A lookup that failed for another reason than absence: an image that cannot be read (EIO),
    /// or a container whose FUSE server is gone (ENOTCONN: it was killed; the container is lost).
    static func unreadable(_ path: String, code: Int32) -> Diagnostic {
        Diagnostic(
            kind: .system, message: "cannot read \(path) in the container: \(String(cString: strerror(code)))",
            hint: code == ENOTCONN
                ? "the container's image server (ns-enter-fuse) is gone: this container cannot be used any more; start a new one (another --name, or after its tasks end)"
                : damagedImageHint)
    }

    static func isUnreadable(_ code: Int32) -> Bool { code == EIO || code == ENOTCONN }

    /// Changes to the container's working directory, or says why it cannot.
    static func changeDirectory(_ workdir: String) throws(Diagnostic) {
        if chdir(workdir) != 0 {
            let failure = SystemCallError("chdir")
            throw Diagnostic(
                kind: .invalid, key: "workdir",
                message: "cannot change to the working directory \(workdir) in the container: \(failure.reason)",
                hint: "set workdir in the EDF (or --workdir) to a directory that exists in the image or is mounted")
        }
    }

    /// Finds a program as execvp does, in the container's PATH.
    static func resolve(_ name: String, path: String) throws(Diagnostic) -> String {
        if name.contains("/") {
            if access(name, F_OK) != 0 {
                let code = errno
                if isUnreadable(code) { throw unreadable(name, code: code) }
                throw Diagnostic(
                    kind: .commandNotFound, message: "command \(name) not found in the container",
                    hint: "the image has no \(name): check the path, or add the program to the image")
            }
            return name
        }
        var denied: String?
        var failed: (path: String, code: Int32)?
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            var info = stat()
            guard stat(candidate, &info) == 0 else {
                let code = errno
                if isUnreadable(code) { failed = failed ?? (candidate, code) }
                continue
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else { continue }
            if access(candidate, X_OK) == 0 { return candidate }
            denied = denied ?? candidate
        }
        if let denied {
            throw Diagnostic(kind: .commandNotExecutable, message: "command \(denied) in the container is not executable")
        }
        if let failed { throw unreadable(failed.path, code: failed.code) }
        throw Diagnostic(
            kind: .commandNotFound, message: "command '\(name)' not found in the container (PATH=\(path))",
            hint: "give the program's full path in the image, or set PATH in the EDF's [env]")
    }

    /// Default dispositions for every signal, and none blocked.
    public static func resetSignals() {
        var empty = sigset_t()
        sigemptyset(&empty)
        sigprocmask(SIG_SETMASK, &empty, nil)
        for signal in 1..<65 where signal != SIGKILL && signal != SIGSTOP {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = SIG_DFL
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            _ = sigaction(Int32(signal), &action, nil)
        }
    }
}
