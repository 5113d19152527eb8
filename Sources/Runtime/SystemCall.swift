import CRuntimeShim
import Glibc
import ToolboxCore

/// A failed system call: what was attempted, on which path, and errno.
public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var path: String?
    public var code: Int32

    public init(_ operation: String, path: String? = nil, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var reason: String { String(cString: strerror(code)) }

    public var description: String {
        if let path { return "\(operation) \(path): \(reason)" }
        return "\(operation): \(reason)"
    }
}

/// Thin throwing wrappers over the system calls the runtime makes.
public enum System {
    @discardableResult
    public static func check(_ result: Int32, _ operation: String, _ path: String? = nil) throws(SystemCallError) -> Int32 {
        if result < 0 { throw SystemCallError(operation, path: path) }
        return result
    }

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(SystemCallError) -> Int32 {
        try check(Glibc.open(path, flags | O_CLOEXEC, mode), "open", path)
    }

    /// Opens `path` inside the tree at `root` (symbolic links cannot lead out of it).
    public static func openInRoot(_ root: Int32, _ path: String, _ flags: Int32, mode: UInt32 = 0) throws(SystemCallError) -> Int32 {
        try check(tbx_open_in_root(root, path, flags, mode), "open", path)
    }

    public static func mount(
        _ source: String?, _ target: String, _ type: String?, _ flags: UInt, _ data: String? = nil, display: String? = nil
    ) throws(SystemCallError) {
        let result: Int32
        if let data {
            result = data.withCString { pointer in Glibc.mount(source, target, type, flags, pointer) }
        } else {
            result = Glibc.mount(source, target, type, flags, nil)
        }
        try check(result, "mount", display ?? target)
    }

    /// The path through which the kernel reaches an open descriptor's file.
    public static func fdPath(_ fd: Int32) -> String { "/proc/self/fd/\(fd)" }

    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Writes all of `text` to a descriptor.
    public static func write(_ fd: Int32, _ text: String, path: String) throws(SystemCallError) {
        try write(fd, Array(text.utf8), path: path)
    }

    /// Writes all of `bytes` to a descriptor (ToolboxCore's write loop).
    public static func write(_ fd: Int32, _ bytes: [UInt8], path: String) throws(SystemCallError) {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(SystemCallError) in
                try FileWriter.writeAll(fd, buffer) { SystemCallError("write", path: path, code: $0) }
            }
        }.get()
    }

    /// Reads a whole small file (procfs and the like), or nil.
    public static func readSmallFile(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        // O_NONBLOCK: a fifo where a file is expected reads as empty instead of blocking.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { return nil }
        defer { _ = Glibc.close(fd) }
        return readAll(fd, limit: limit)
    }

    /// Reads a descriptor to its end (up to `limit` bytes), or nil on a read error.
    public static func readAll(_ fd: Int32, limit: Int = 1 << 20) -> [UInt8]? {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<count])
        }
        return result
    }

    /// Stops processes (helpers, hooks' services): SIGTERM, then SIGKILL for those still there
    /// two seconds later. `groups`: each pid leads a process group (a service, in a session of
    /// its own), and the whole group is stopped: what the service forked goes with it, also when
    /// the service itself has already exited.
    public static func stop(_ pids: [pid_t], groups: Bool = false) {
        let alive = { (pid: pid_t) in running(pid) || (groups && groupRunning(pid)) }
        for pid in pids {
            if groups { kill(-pid, SIGTERM) }
            kill(pid, SIGTERM)
        }
        for _ in 0..<100 where pids.contains(where: alive) { usleep(20_000) }
        for pid in pids where alive(pid) {
            if groups { kill(-pid, SIGKILL) }
            kill(pid, SIGKILL)
        }
    }

    /// Whether a process of the process group `group` still runs (not a zombie: an exited
    /// member may wait for a parent that never reaps it).
    public static func groupRunning(_ group: pid_t) -> Bool {
        guard kill(-group, 0) == 0, let directory = opendir("/proc") else { return false }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(name), let bytes = readSmallFile("/proc/\(pid)/stat"),
                let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count
            else { continue }
            // After "comm)": state, ppid, pgrp.
            let fields = bytes[(close + 2)...].split(separator: UInt8(ascii: " "), maxSplits: 3)
            guard fields.count >= 3, fields[0].first != UInt8(ascii: "Z"),
                pid_t(String(decoding: fields[2], as: UTF8.self)) == group
            else { continue }
            return true
        }
        return false
    }

    /// Whether a process still runs: it exists and is not a zombie (a helper whose parent is
    /// the user's command is reaped only when that command waits, which it may never do).
    public static func running(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let bytes = readSmallFile("/proc/\(pid)/stat"), let close = bytes.lastIndex(of: UInt8(ascii: ")")),
            close + 2 < bytes.count
        else { return true }
        return bytes[close + 2] != UInt8(ascii: "Z")
    }

    /// The number of threads of this process (unshare and setns of a user namespace need one).
    public static func threadCount() -> Int {
        guard let bytes = readSmallFile("/proc/self/status"), let text = String(validating: bytes, as: UTF8.self) else {
            return 1
        }
        for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst("Threads:".count).trimmingCharacters(in: " \t")) ?? 1
        }
        return 1
    }
}

extension Substring {
    /// The substring without the given characters at either end.
    public func trimmingCharacters(in set: String) -> String {
        var text = self
        while let first = text.first, set.contains(first) { text.removeFirst() }
        while let last = text.last, set.contains(last) { text.removeLast() }
        return String(text)
    }
}
