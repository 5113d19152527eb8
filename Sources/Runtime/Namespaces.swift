import CRuntimeShim
import Glibc
import ToolboxCore

/// Who runs the container and how: the caller's ids, and whether it is privileged (real root in
/// the initial user namespace), in which case no user namespace is made.
public struct Identity: Sendable {
    public var uid: uid_t
    public var gid: gid_t
    public var privileged: Bool
    /// The ids of the caller inside the container (0 with remapped root).
    public var innerUID: uid_t
    public var innerGID: gid_t

    public static func current(remapRoot: Bool) -> Identity {
        let uid = getuid()
        let gid = getgid()
        let privileged = geteuid() == 0 && Self.inInitialUserNamespace()
        let inner = remapRoot || privileged
        return Identity(uid: uid, gid: gid, privileged: privileged, innerUID: inner ? 0 : uid, innerGID: inner ? 0 : gid)
    }

    /// True when this process's user namespace maps every id to itself (the initial one).
    static func inInitialUserNamespace() -> Bool {
        guard let bytes = System.readSmallFile("/proc/self/uid_map"), let text = String(validating: bytes, as: UTF8.self)
        else { return false }
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        return fields == ["0", "0", "4294967295"]
    }
}

/// Making and joining the container's namespaces.
public enum Namespaces {
    /// A new mount namespace, and for an unprivileged caller first a user namespace in which the
    /// caller's uid and gid are mapped to `innerUID`/`innerGID` (single ids, as enroot: no subuid
    /// helpers). Must run while the process has one thread.
    public static func create(for identity: Identity) throws(Diagnostic) {
        try requireSingleThread("create namespaces")
        if identity.privileged {
            if tbx_unshare(0) != 0 {
                let failure = SystemCallError("unshare")
                throw Diagnostic(kind: .unavailable, message: "cannot create a mount namespace: \(failure.reason)")
            }
            return
        }
        if tbx_unshare(1) != 0 {
            let error = SystemCallError("unshare")
            throw Diagnostic(
                kind: .unavailable,
                message: "cannot create a user namespace: \(error.reason)\(userNamespaceLimit())",
                hint: "unprivileged user namespaces must be allowed: sysctl user.max_user_namespaces must be above 0 "
                    + "(and kernel.unprivileged_userns_clone = 1 where that setting exists); ask the site's administrators")
        }
        do {
            try writeProcFile("/proc/self/setgroups", "deny")
            try writeProcFile("/proc/self/uid_map", "\(identity.innerUID) \(identity.uid) 1\n")
            try writeProcFile("/proc/self/gid_map", "\(identity.innerGID) \(identity.gid) 1\n")
        } catch {
            throw Diagnostic(kind: .unavailable, message: "cannot map the user into the user namespace: \(error)")
        }
        // Hooks and fuse-overlayfs run with the namespace's capabilities (Launcher drops them).
        let raised = tbx_raise_ambient_capabilities()
        if raised != 0 {
            throw Diagnostic(
                kind: .system,
                message: "cannot pass the user namespace's capabilities to hooks: \(SystemCallError("prctl", code: -raised).reason)")
        }
    }

    static func userNamespaceLimit() -> String {
        guard let bytes = System.readSmallFile("/proc/sys/user/max_user_namespaces"),
            let text = String(validating: bytes, as: UTF8.self)
        else { return "" }
        let value = text.split(separator: "\n").first.map(String.init) ?? ""
        return value == "0" ? " (user.max_user_namespaces is 0)" : ""
    }

    static func writeProcFile(_ path: String, _ text: String) throws(SystemCallError) {
        let fd = try System.open(path, O_WRONLY)
        defer { System.close(fd) }
        try System.write(fd, text, path: path)
    }

    static func requireSingleThread(_ what: String) throws(Diagnostic) {
        let threads = System.threadCount()
        if threads != 1 {
            throw Diagnostic(kind: .software, message: "cannot \(what): the process has \(threads) threads (it must have one)")
        }
    }

    /// Enters the user (unless it is ours) and mount namespaces of a running container's process,
    /// given as descriptors of its /proc/PID/ns files.
    public static func join(user: Int32, mount: Int32, privileged: Bool) throws(Diagnostic) {
        try requireSingleThread("join a container")
        if !privileged && !sameNamespace(user, "/proc/self/ns/user") {
            if tbx_setns(user, 1) != 0 {
                let failure = SystemCallError("setns")
                throw Diagnostic(kind: .unavailable, message: "cannot enter the container's user namespace: \(failure.reason)")
            }
        }
        if tbx_setns(mount, 0) != 0 {
            let failure = SystemCallError("setns")
            throw Diagnostic(kind: .unavailable, message: "cannot enter the container's mount namespace: \(failure.reason)")
        }
    }

    static func sameNamespace(_ fd: Int32, _ path: String) -> Bool {
        var a = stat()
        var b = stat()
        guard fstat(fd, &a) == 0, stat(path, &b) == 0 else { return false }
        return a.st_ino == b.st_ino && a.st_dev == b.st_dev
    }
}
