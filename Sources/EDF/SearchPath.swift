#if canImport(Glibc)
import Glibc
#endif
import ToolboxCore

/// Where bare environment names are looked up: the user's directories (`EDF_PATH`, colon-separated,
/// default `$HOME/.edf`), then the site's (`EDF_SYSTEM_PATH`, default `/etc/edf`).
public struct SearchPath: Sendable, Equatable {
    public static let defaultSystemDirectory = "/etc/edf"

    public var user: [String]
    public var system: [String]

    public init(user: [String], system: [String] = [defaultSystemDirectory]) {
        self.user = user
        self.system = system
    }

    public var directories: [String] { user + system }

    /// The search path from the process environment; warnings for entries that are not absolute.
    public static func from(environment: [String: String]) -> (SearchPath, [Diagnostic]) {
        var warnings: [Diagnostic] = []
        func directories(_ variable: String, default fallback: [String]) -> [String] {
            guard let value = environment[variable] else { return fallback }
            var result: [String] = []
            for entry in value.split(separator: ":") where !entry.isEmpty {
                guard entry.hasPrefix("/") else {
                    warnings.append(
                        .warning(
                            "\(variable) entry '\(entry)' is not an absolute path; ignored",
                            hint: "list absolute directories, e.g. \(variable)=$HOME/.edf:/project/edf"))
                    continue
                }
                result.append(String(entry))
            }
            return result
        }
        // A relative HOME names no fixed place (EDF_PATH entries that are relative are ignored too).
        let home = environment["HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        let user = directories("EDF_PATH", default: home.map { [$0 + "/.edf"] } ?? [])
        let system = directories("EDF_SYSTEM_PATH", default: [defaultSystemDirectory])
        return (SearchPath(user: user, system: system), warnings)
    }

    /// How an environment reference is interpreted.
    public enum Reference: Sendable, Equatable {
        /// A file path: absolute, or starting with `./` or `../` (relative to the current directory).
        case path(String)
        /// A name looked up as `<dir>/<name>.toml` in the search path.
        case name(String)

        public init(_ text: String) {
            if text.hasPrefix("/") || text.hasPrefix("./") || text.hasPrefix("../") || text == "." || text == ".." {
                self = .path(text)
            } else {
                self = .name(text)
            }
        }
    }

    /// An EDF file whose name does not end in `.toml` (refused, as the reference system does).
    public static func notTOML(_ path: String) -> Diagnostic {
        Diagnostic(
            kind: .invalid, message: "\(path): the file name does not end in .toml",
            hint: "EDF files are named NAME.toml (that is also how EDF_PATH finds NAME): rename it")
    }

    /// The file an (already expanded) reference names. Names ending in `.toml` are refused, since
    /// the user almost certainly meant a file in the current directory.
    public func resolve(_ text: String, currentDirectory: String) -> Result<String, Diagnostic> {
        switch Reference(text) {
        case .path(let path):
            let absolute = Path.absolute(path, relativeTo: currentDirectory)
            guard absolute.hasSuffix(".toml") else { return .failure(Self.notTOML(absolute)) }
            return .success(absolute)
        case .name(let name):
            if name.isEmpty {
                return .failure(Diagnostic(message: "empty environment name", hint: "give a name, ./file.toml or /path/file.toml"))
            }
            if name.hasSuffix(".toml") {
                return .failure(
                    Diagnostic(
                        message: "environment name \"\(name)\" ends in .toml but is not a path",
                        hint: "write ./\(name) for a file in the current directory, or \(name.dropLast(5)) to search EDF_PATH"))
            }
            if name.split(separator: "/").contains("..") {
                return .failure(
                    Diagnostic(
                        message: "environment name \"\(name)\" contains '..'",
                        hint: "a name stays inside the search directories; give a path starting with ./ or / for a file elsewhere"))
            }
            var unreadable: String?
            for directory in directories {
                let candidate = Path.normalize(directory + "/" + name + ".toml")
                // The first readable regular file wins; a directory, fifo or device of that name,
                // or a file this user cannot read, does not stop the search.
                guard FileReader.kind(of: candidate) == .regularFile else { continue }
                if access(candidate, R_OK) == 0 { return .success(candidate) }
                unreadable = unreadable ?? candidate
            }
            if let unreadable {
                return .failure(
                    Diagnostic(
                        kind: .unreadable, message: "\(unreadable): cannot read: permission denied (no other \(name).toml on the search path)",
                        hint: "check the file's permissions (ls -l), or put a readable \(name).toml earlier in EDF_PATH"))
            }
            let tried = directories.isEmpty ? "(no directories: EDF_PATH is empty and no system directory is set)" : directories.joined(separator: ", ")
            return .failure(
                Diagnostic(
                    kind: .notFound, message: "environment \"\(name)\" not found; looked for \(name).toml in: \(tried)",
                    hint: "put \(name).toml in one of these directories, add its directory to EDF_PATH, or give a path starting with ./ or /"))
        }
    }
}
