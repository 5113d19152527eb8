#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writing whole buffers and small files; the caller turns a failing call's errno into its own
/// diagnostic (a full cache and a full image store call for different hints).
public enum FileWriter {
    /// Creates a new file of this process's own in `directory` (mode 0600, never an existing
    /// file or a link): `prefix.<pid>.<random><suffix>`. Returns its descriptor and path, or the
    /// errno of the failed creation.
    public static func createUnique(in directory: String, prefix: String, suffix: String = "") -> Result<(fd: Int32, path: String), SystemError> {
        var code: Int32 = EEXIST
        for _ in 0..<16 where code == EEXIST {
            let path = "\(directory)/\(prefix).\(getpid()).\(UInt32.random(in: 0...UInt32.max))\(suffix)"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if fd >= 0 { return .success((fd, path)) }
            code = errno
        }
        return .failure(SystemError(code: code))
    }

    /// An errno, for `createUnique`.
    public struct SystemError: Error {
        public var code: Int32
        public var reason: String { String(cString: strerror(code)) }
    }

    /// Writes all of `buffer` to `fd`, at its file position or, with `position`, there (pwrite),
    /// retrying short writes and EINTR; a failing call's errno becomes the caller's error.
    public static func writeAll<Failure: Error>(
        _ fd: Int32, _ buffer: UnsafeRawBufferPointer, at position: UInt64? = nil, failure: (Int32) -> Failure
    ) throws(Failure) {
        var offset = 0
        while offset < buffer.count {
            guard let base = buffer.baseAddress else { return }
            let n: Int
            if let position {
                n = pwrite(fd, base + offset, buffer.count - offset, off_t(position) + off_t(offset))
            } else {
                n = write(fd, base + offset, buffer.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(errno)
            }
            offset += n
        }
    }

    /// Creates (or truncates) `path`, mode 0664 less the umask, and writes `bytes` into it.
    public static func writeFile(_ path: String, _ bytes: [UInt8], failure: (Int32) -> Diagnostic) throws(Diagnostic) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o664)
        if fd < 0 { throw Diagnostic(kind: .output, file: path, message: "cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try bytes.withUnsafeBytes { buffer in Result { () throws(Diagnostic) in try writeAll(fd, buffer, failure: failure) } }.get()
    }

    /// Appends `text` to an existing file (the hook protocol's ENROOT_MOUNTS, ENROOT_ENVIRON,
    /// TOOLBOX_HOOK_PIDS); `creating`: made (mode 0600) when it is not there yet.
    public static func append(_ text: String, to path: String, creating: Bool = false) throws(Diagnostic) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | (creating ? O_CREAT : 0), 0o600)
        let failure = { (code: Int32) in
            Diagnostic(kind: .output, message: "cannot append to \(path): \(String(cString: strerror(code)))")
        }
        if fd < 0 { throw failure(errno) }
        defer { close(fd) }
        try Array(text.utf8).withUnsafeBytes { buffer in Result { () throws(Diagnostic) in try writeAll(fd, buffer, failure: failure) } }.get()
    }

    /// Removes a directory tree of our own, as far as it can: never follows a symbolic link,
    /// never crosses into another mount; a directory without write permission (an unpacked
    /// image has some) is made writable first.
    public static func removeTree(_ path: String) {
        var top = stat()
        guard lstat(path, &top) == 0 else { return }
        func walk(_ directory: String) {
            for name in FileReader.names(inDirectory: directory) ?? [] {
                let child = directory + "/" + name
                var info = stat()
                guard lstat(child, &info) == 0 else { continue }
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    if info.st_dev == top.st_dev {
                        if info.st_mode & 0o700 != 0o700 { chmod(child, info.st_mode & 0o7777 | 0o700) }
                        walk(child)
                    }
                    rmdir(child)
                } else {
                    unlink(child)
                }
            }
        }
        if (top.st_mode & S_IFMT) == S_IFDIR {
            if top.st_mode & 0o700 != 0o700 { chmod(path, top.st_mode & 0o7777 | 0o700) }
            walk(path)
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
