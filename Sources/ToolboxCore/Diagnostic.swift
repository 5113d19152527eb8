/// What went wrong, where, and what to do about it: the one error type that commands report.
///
/// Rendered on stderr as
///
///     <tool>: error: <file>:<line>:<column>: key '<key>': <message>
///       hint: <hint>
///       chain: a.toml -> b.toml
///
/// where every part but the message is optional.
public struct Diagnostic: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        case error, warning
    }

    /// The class of failure; it decides the exit status (see `ExitStatus`).
    public enum Kind: Sendable {
        /// A command line that does not parse (an option without its value).
        case usage
        /// A file or an environment name that does not exist.
        case notFound
        /// A file that exists but cannot be read.
        case unreadable
        /// Input that does not parse (TOML or JSON syntax).
        case syntax
        /// Input that parses but is not valid: wrong types, bad values, undefined variables, cycles.
        case invalid
        /// Writing the output failed (also: a full disk, an unwritable cache).
        case output
        /// A registry could not be reached, or kept failing (timeouts, 5xx, 429).
        case network
        /// A registry refused access: missing or wrong credentials.
        case denied
        /// The system lacks something the runtime needs: user namespaces, /dev/fuse, overlayfs.
        case unavailable
        /// A system call of the runtime failed (a mount, pivot_root, exec).
        case system
        /// A hook failed or timed out.
        case hook
        /// The command to run does not exist in the container.
        case commandNotFound
        /// The command exists but cannot be executed.
        case commandNotExecutable
        /// A bug: an internal invariant did not hold.
        case software
    }

    public var severity: Severity
    public var kind: Kind
    public var file: String?
    public var line: Int?
    public var column: Int?
    public var key: String?
    public var message: String
    public var hint: String?
    /// The files that led to this one (outermost first), for errors found through base_environment.
    public var chain: [String]

    public init(
        _ severity: Severity = .error, kind: Kind = .invalid, file: String? = nil, line: Int? = nil,
        column: Int? = nil, key: String? = nil, message: String, hint: String? = nil, chain: [String] = []
    ) {
        self.severity = severity
        self.kind = kind
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
        self.hint = hint
        self.chain = chain
    }

    public static func warning(
        file: String? = nil, line: Int? = nil, key: String? = nil, _ message: String, hint: String? = nil
    ) -> Diagnostic {
        Diagnostic(.warning, kind: .invalid, file: file, line: line, key: key, message: message, hint: hint)
    }

    /// The text after `<tool>: error: `, without the hint and chain lines.
    public var description: String {
        var text = ""
        if let file {
            text += file
            if let line {
                text += ":\(line)"
                if let column { text += ":\(column)" }
            }
            text += ": "
        }
        if let key { text += "key '\(Self.visible(key))': " }
        return text + message
    }

    /// Control characters (a line break in a quoted TOML key) as `\xNN`: a message stays on its line.
    public static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        return text.unicodeScalars.map { scalar in
            guard scalar.value < 0x20 || scalar.value == 0x7F else { return String(scalar) }
            let hex = String(scalar.value, radix: 16)
            return "\\x" + (hex.count < 2 ? "0" + hex : hex)
        }.joined()
    }

    /// The full message for stderr, one or more lines, each ending in a newline.
    public func rendered(tool: String) -> String {
        var text = "\(tool): \(severity.rawValue): \(description)\n"
        if chain.count > 1 { text += "  chain: \(chain.joined(separator: " -> "))\n" }
        if let hint { text += "  hint: \(hint)\n" }
        return text
    }
}

/// Several diagnostics found in one run; thrown when a command has to stop.
public struct DiagnosticList: Error, Sendable, Equatable {
    public var diagnostics: [Diagnostic]

    public init(_ diagnostics: [Diagnostic]) {
        self.diagnostics = diagnostics
    }

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
}

/// A short, human description of a JSON decoding error: which key is missing or has the wrong
/// type, or what the syntax error is.
public func describeDecodingError(_ error: any Error) -> String {
    /// `mounts[0].options`, not `mounts.Index 0.options`.
    func path(_ keys: [any CodingKey]) -> String {
        var text = ""
        for key in keys {
            if let index = key.intValue, key.stringValue.hasPrefix("Index ") || key.stringValue == String(index) {
                text += "[\(index)]"
            } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return text
    }
    switch error {
    case DecodingError.keyNotFound(let key, let context):
        return "missing key '\(path(context.codingPath + [key]))'"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        return "wrong type at '\(path(context.codingPath))'"
    case DecodingError.dataCorrupted(let context):
        if context.codingPath.isEmpty {
            // Not JSON at all: what the parser underneath says, with its position when it has one.
            let underlying = context.underlyingError.map { String(describing: $0) }
            return "not valid JSON" + (underlying.map { ": \($0)" } ?? "")
        }
        return "a value that is not one of those allowed at '\(path(context.codingPath))'"
    default:
        return String(describing: error)
    }
}
