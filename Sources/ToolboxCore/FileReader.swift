#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reading whole input files with errors that say what happened (missing, a directory, no
/// permission), from the errno of the failing call.
public enum FileReader {
    /// The largest input file read, so that `/dev/zero` or a mistyped huge file cannot exhaust memory.
    public static let maximumSize = 16 << 20

    /// Reads a file as UTF-8 text. `path` "-" reads standard input.
    /// `regularOnly`: a fifo, device or socket is refused, never read (a fifo would wait forever).
    public static func readText(_ path: String, displayName: String? = nil, regularOnly: Bool = false) throws(Diagnostic) -> String {
        let name = displayName ?? path
        let bytes = try readBytes(path, displayName: displayName, regularOnly: regularOnly)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Diagnostic(kind: .syntax, file: name, message: "not valid UTF-8 text", hint: "save it as UTF-8 (iconv -t UTF-8 converts it)")
        }
        return text
    }

    /// Reads a file's bytes, as readText does (at most `maximumSize`); "-" reads standard input.
    public static func readBytes(_ path: String, displayName: String? = nil, regularOnly: Bool = false) throws(Diagnostic) -> [UInt8] {
        let name = displayName ?? path
        let fd: Int32
        if path == "-" {
            fd = STDIN_FILENO
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC | (regularOnly ? O_NONBLOCK | O_NOCTTY : 0))
            if fd < 0 { throw openError(errno, name: name) }
            var info = stat()
            if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
                close(fd)
                throw Diagnostic(kind: .unreadable, file: name, message: "is a directory, not a file", hint: "give the path of a file in it")
            }
            if regularOnly {
                guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                    close(fd)
                    throw Diagnostic(
                        kind: .invalid, file: name, message: "is not a regular file (a fifo, a device or a socket)", hint: "give the path of a file")
                }
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            }
        }
        defer { if fd != STDIN_FILENO { close(fd) } }
        var bytes: [UInt8] = []
        try stream(fd, path: name) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in
            bytes.append(contentsOf: chunk)
            if bytes.count > maximumSize {
                throw Diagnostic(
                    kind: .invalid, file: name, message: "larger than \(maximumSize >> 20) MiB; not an EDF",
                    hint: "check the file name")
            }
        }
        return bytes
    }

    /// Opens a file that must be a regular file (a blob of an image layout, a layer): a fifo, a
    /// device or a directory in its place is an error, not a read that waits forever. `missing`
    /// is the message and hint for a path that does not exist; `hint` goes with the others.
    public static func openRegularFile(
        _ path: String, what: String, missing: (message: String, hint: String), hint: String
    ) throws(Diagnostic) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR {
                throw Diagnostic(kind: .notFound, file: path, message: missing.message, hint: missing.hint)
            }
            throw openError(errno, name: path)
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw Diagnostic(kind: .invalid, file: path, message: "\(what) is not a regular file", hint: hint)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }

    static func openError(_ code: Int32, name: String) -> Diagnostic {
        switch code {
        case ENOENT, ENOTDIR:
            return Diagnostic(kind: .notFound, file: name, message: "no such file", hint: "check the path (relative paths are taken from the current directory)")
        case ELOOP:
            return Diagnostic(
                kind: .unreadable, file: name, message: "cannot open: too many levels of symbolic links",
                hint: "a symbolic link on the way points back to itself: fix it with ln -sfn")
        case EACCES, EPERM:
            return Diagnostic(
                kind: .unreadable, file: name, message: "cannot read: permission denied",
                hint: "check the file's permissions (ls -l) and those of its directories")
        default:
            return Diagnostic(kind: .unreadable, file: name, message: "cannot open: \(String(cString: strerror(code)))")
        }
    }

    /// The document a stage reads on stdin from the stage before it; nothing at all there means
    /// that stage failed or printed nothing, which is said instead of a JSON parse error.
    public static func readDocument(from previous: String) throws(Diagnostic) -> String {
        let text = try readText("-", displayName: "<stdin>")
        guard text.contains(where: { !$0.isWhitespace }) else {
            throw Diagnostic(
                kind: .invalid, file: "<stdin>", message: "no document on stdin",
                hint: "pipe in what \(previous) prints; when it failed, its message is above")
        }
        return text
    }

    /// Reads an open file from its current position to the end, 1 MiB at a time.
    public static func stream(
        _ fd: Int32, path: String, _ body: (UnsafeRawBufferPointer) throws(Diagnostic) -> Void
    ) throws(Diagnostic) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Diagnostic(kind: .unreadable, file: path, message: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            let result = buffer.withUnsafeBytes { raw in
                Result { () throws(Diagnostic) in try body(UnsafeRawBufferPointer(rebasing: raw[0..<n])) }
            }
            try result.get()
        }
    }

    /// What is at a path, following symbolic links. `inaccessible`: it cannot be looked at (a
    /// directory on the way without permission, a symbolic link loop), with the reason.
    public enum Kind: Sendable, Equatable {
        case missing, regularFile, directory, other
        case inaccessible(String)
    }

    public static func kind(of path: String) -> Kind {
        var info = stat()
        guard stat(path, &info) == 0 else {
            switch errno {
            case ENOENT, ENOTDIR: return .missing
            case ELOOP: return .inaccessible("too many levels of symbolic links")
            default: return .inaccessible(String(cString: strerror(errno)).lowercased())
            }
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .regularFile
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    /// Why the calling user cannot read a path (access(2), R_OK), or nil when it can.
    public static func unreadable(_ path: String) -> String? {
        access(path, R_OK) == 0 ? nil : String(cString: strerror(errno)).lowercased()
    }

    /// The target of a symbolic link (or of a /proc/self/fd entry), or nil.
    public static func link(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The names in a directory (without . and ..), or nil when it cannot be opened.
    public static func names(inDirectory path: String) -> [String]? {
        guard let stream = opendir(path) else { return nil }
        return names(of: stream)
    }

    /// The names in the directory open at `fd` (taken over and closed), or nil.
    public static func names(inDirectoryAt fd: Int32) -> [String]? {
        guard let stream = fdopendir(fd) else {
            close(fd)
            return nil
        }
        return names(of: stream)
    }

    private static func names(of stream: OpaquePointer) -> [String] {
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// A command installed next to the running one (the toolbox's commands are installed
    /// together), if it is there and executable.
    public static func sibling(_ name: String) -> String? {
        guard let executable = link("/proc/self/exe") else { return nil }
        let candidate = String(executable[..<(executable.lastIndex(of: "/") ?? executable.startIndex)]) + "/" + name
        return access(candidate, X_OK) == 0 ? candidate : nil
    }

    /// The current working directory, or "/" when it cannot be determined.
    public static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "/" }
        let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
