/// The exit statuses of the toolbox's own failures, in one place. Commands that run a program
/// (ns-enter) pass that program's status through instead; these values are chosen so that they do
/// not collide with the statuses a shell gives (1, 2, 126, 127, 128+N).
public enum ExitStatus: Int32, Sendable, CaseIterable {
    /// Success.
    case success = 0
    /// ns-enter: the command was found but could not be executed (the shell's convention).
    case commandNotExecutable = 126
    /// ns-enter: the command was not found in the container (the shell's convention).
    case commandNotFound = 127
    /// Usage error: unknown option, missing argument (the argument parser's EX_USAGE).
    case usage = 64
    /// Invalid input: TOML/JSON syntax, wrong types, bad values, undefined variables, cycles.
    case invalidInput = 65
    /// An input file or environment name was not found or cannot be read.
    case noInput = 66
    /// The system lacks what the runtime needs (EX_UNAVAILABLE): user namespaces, /dev/fuse.
    case unavailable = 69
    /// An internal error (a bug): please report it.
    case software = 70
    /// A system call of the runtime failed (EX_OSERR): a mount, pivot_root.
    case osError = 71
    /// Writing the output failed (closed pipe, full disk).
    case ioError = 74
    /// A registry could not be reached or kept failing (EX_TEMPFAIL: try again later).
    case tempFail = 75
    /// A registry refused access (EX_NOPERM): missing or wrong credentials.
    case noPermission = 77
    /// A site or user hook failed or timed out (EX_CONFIG).
    case hookFailed = 78

    public init(_ kind: Diagnostic.Kind) {
        switch kind {
        case .usage: self = .usage
        case .notFound, .unreadable: self = .noInput
        case .syntax, .invalid: self = .invalidInput
        case .output: self = .ioError
        case .network: self = .tempFail
        case .denied: self = .noPermission
        case .unavailable: self = .unavailable
        case .system: self = .osError
        case .hook: self = .hookFailed
        case .commandNotFound: self = .commandNotFound
        case .commandNotExecutable: self = .commandNotExecutable
        case .software: self = .software
        }
    }

    /// The status for a run that found these errors: that of the first one.
    public init(for errors: [Diagnostic]) {
        self = errors.first.map { ExitStatus($0.kind) } ?? .success
    }

    /// One line per status, for `--help` texts and the README.
    /// The statuses a command documents in its help; `meanings` says what one means for this
    /// command where the general text would mislead (img-pull's 65 is no syntax error).
    public static func helpTable(_ statuses: [ExitStatus], meanings: [ExitStatus: String] = [:]) -> String {
        statuses.map { status in
            let code = String(status.rawValue)
            return code + String(repeating: " ", count: max(1, 5 - code.count)) + (meanings[status] ?? status.meaning)
        }.joined(separator: "\n")
    }

    public var meaning: String {
        switch self {
        case .success: "success"
        case .usage: "usage error (unknown option, missing argument)"
        case .invalidInput: "invalid input: syntax, types, values, undefined variables, cycles, nesting depth"
        case .noInput: "an input file or environment was not found or cannot be read"
        case .software: "internal error (a bug: please report it)"
        case .ioError: "the output or the cache could not be written (disk full, permissions)"
        case .tempFail: "a registry could not be reached or kept failing; try again later"
        case .noPermission: "a registry refused access: missing or wrong credentials"
        case .commandNotExecutable: "the command cannot be executed in the container"
        case .commandNotFound: "the command was not found in the container"
        case .unavailable: "the system lacks what is needed: user namespaces, /dev/fuse, overlayfs"
        case .osError: "a system call failed while building the container (mount, pivot_root)"
        case .hookFailed: "a hook failed or timed out"
        }
    }
}
