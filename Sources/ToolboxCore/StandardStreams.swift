#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writing to stdout and stderr without buffering surprises: stdout carries data, stderr people's
/// messages.
public enum StandardStreams {
    /// Writes all of `text` to a file descriptor; false when the write failed (closed pipe, full disk).
    @discardableResult
    public static func write(_ text: String, to fd: Int32) -> Bool {
        write(bytes: Array(text.utf8), to: fd)
    }

    /// Writes all of `bytes` to a file descriptor; false when the write failed.
    @discardableResult
    public static func write(bytes: [UInt8], to fd: Int32) -> Bool {
        var bytes = bytes
        return bytes.withUnsafeMutableBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                guard let base = buffer.baseAddress else { return false }
                let n = Glibc.write(fd, base + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
    }

    /// Writes data to stdout; a failure is reported as a diagnostic of kind `.output`.
    public static func writeOutput(_ text: String) throws(Diagnostic) {
        try writeOutput(bytes: Array(text.utf8))
    }

    /// Writes data (bytes, as they are) to stdout.
    public static func writeOutput(bytes: [UInt8]) throws(Diagnostic) {
        if !write(bytes: bytes, to: STDOUT_FILENO) {
            let reason = String(cString: strerror(errno))
            throw Diagnostic(kind: .output, message: "cannot write to standard output: \(reason)")
        }
    }

    public static func writeError(_ text: String) {
        write(text, to: STDERR_FILENO)
    }
}
