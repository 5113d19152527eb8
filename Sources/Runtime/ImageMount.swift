import CRuntimeShim
import Glibc
import ToolboxCore

/// A squashfs image made ready to be mounted before the namespaces are created: for an
/// unprivileged caller a FUSE server (libsquashfuse) in its own process, outside the container's
/// namespaces so that it never keeps them alive and ends when the last mount of its file system
/// goes; for real root a loop device and the kernel's squashfs.
public final class PreparedImage {
    public let path: String
    var source: String?
    enum Backend {
        case fuse(status: Int32, channel: Int32, helper: pid_t)
        case loop(device: Int32, node: String)
    }
    var backend: Backend

    init(path: String, backend: Backend) {
        self.path = path
        self.backend = backend
    }

    deinit {
        switch backend {
        case .fuse(let status, let channel, let helper):
            if status >= 0 { System.close(status) }
            if channel >= 0 { System.close(channel) }
            if helper > 0 {
                var ignored: Int32 = 0
                waitpid(helper, &ignored, 0)
            }
        case .loop(let device, _):
            if device >= 0 { System.close(device) }
        }
    }

    /// Checks that `path` is a squashfs 4.0 image and prepares it. `what` names it in messages
    /// (`image`, `mounts[2]`).
    public static func prepare(
        _ path: String, what: String, identity: Identity, source: String? = nil
    ) throws(Diagnostic) -> PreparedImage {
        let fd = try checkImage(path, what: what, source: source)
        defer { System.close(fd) }
        if identity.privileged {
            var node = [CChar](repeating: 0, count: 64)
            let loop = tbx_loop_attach(fd, &node, node.count)
            if loop >= 0 {
                return PreparedImage(path: path, backend: .loop(device: loop, node: String(decoding: node.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
            }
            // No loop device to be had (a container without /dev/loop*): FUSE works for root too.
        }
        // Checked now for a clear message; opened again in the user namespace (the kernel wants
        // the descriptor opened there).
        System.close(try openFUSE())
        configureCache(for: fd)
        // The server opens the image while this process goes on; mount() waits for its report.
        var status: Int32 = -1
        var channel: Int32 = -1
        var helper: pid_t = 0
        let started = tbx_fuse_server_start(path, identity.innerUID, identity.innerGID, &status, &channel, &helper)
        if started < 0 {
            throw Diagnostic(kind: .system, file: source, key: what, message: "\(path): \(SystemCallError("start the FUSE server", code: -started))")
        }
        let image = PreparedImage(path: path, backend: .fuse(status: status, channel: channel, helper: helper))
        image.source = source
        return image
    }

    /// With `NS_ENTER_CACHE=DIR` (an absolute directory, e.g. on /dev/shm), the server keeps the
    /// blocks it decompresses in DIR/<image identity>/, where the servers of later containers of
    /// the same image find them: a start after the first does not decompress what the first one
    /// read. The identity is the image file's device, inode, size and times (img-squash replaces
    /// images by renaming, so a new image gets a new directory). `NS_ENTER_CACHE_LIMIT` caps what
    /// one server writes, in MiB (default 1024). Nothing is removed automatically: the directory
    /// belongs to the caller (a job epilog, or a tmpfs that goes with the job, cleans it).
    static func configureCache(for fd: Int32) {
        tbx_fuse_server_set_cache(nil, 0)
        let environment = ProcessEnvironment.current
        // %j: the job's id (what the srun wrapper sets: a directory per job); no job, or an id
        // that would change the path's shape, no cache.
        guard let pattern = environment["NS_ENTER_CACHE"], pattern.hasPrefix("/"),
            let base = try? SlurmPattern.expand(pattern, environment: environment),
            base.split(separator: "/").count == pattern.split(separator: "/").count,
            !base.split(separator: "/").contains(where: { $0 == "." || $0 == ".." })
        else { return }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        let key = "\(info.st_dev)-\(info.st_ino)-\(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)-\(info.st_ctim.tv_sec).\(info.st_ctim.tv_nsec)"
        let directory = base + "/" + key
        // The missing directories are made private to the user. The blocks are served as the
        // image's content, so no one else may be able to change them: every directory on the way
        // is root's or the user's, one that others may write to has the sticky bit (/tmp), and
        // the last two are the user's alone (in a /tmp/toolbox-cache-UID that another user made
        // first, there is no cache).
        var made = ""
        let parts = (base + "/" + key).split(separator: "/")
        for (index, part) in parts.enumerated() {
            made += "/" + part
            if mkdir(made, 0o700) != 0 && errno != EEXIST { return }
            var owned = stat()
            guard lstat(made, &owned) == 0, (owned.st_mode & S_IFMT) == S_IFDIR else { return }
            let othersWrite = owned.st_mode & 0o022 != 0
            if index >= parts.count - 2 {
                guard owned.st_uid == geteuid(), !othersWrite else { return }
            } else {
                guard owned.st_uid == 0 || owned.st_uid == geteuid(), !othersWrite || owned.st_mode & S_ISVTX != 0 else { return }
            }
        }
        let megabytes = environment["NS_ENTER_CACHE_LIMIT"].flatMap { UInt64($0) } ?? 1024
        tbx_fuse_server_set_cache(directory, megabytes << 20)
    }

    /// Opens the image and checks the squashfs 4.0 superblock; returns the open descriptor.
    public static func checkImage(_ path: String, what: String, source: String?) throws(Diagnostic) -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let error = SystemCallError("open", path: path)
            throw Diagnostic(
                kind: error.code == ENOENT ? .notFound : .unreadable, file: source, key: what,
                message: "cannot open the image \(path): \(error.reason)",
                hint: error.code == ENOENT ? "check the path; img-squash writes images into the image store" : nil)
        }
        var info = stat()
        let problem: SquashFSHeader.Problem?
        if fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG {
            if case .failure(let found) = SquashFSHeader.read(fd) { problem = found } else { problem = nil }
        } else {
            problem = .notSquashFS
        }
        if let problem {
            System.close(fd)
            if case .truncated = problem {
                // Mounted, it would fail as a "Bus error" of the first program that reads past the end.
                throw Diagnostic(
                    kind: .invalid, file: source, key: what, message: problem.describe(path),
                    hint: "a copy or a build of it was cut short: copy it again, or rebuild it (img-squash --force)")
            }
            throw Diagnostic(
                kind: .invalid, file: source, key: what, message: problem.describe(path),
                hint: "images are made by img-squash (or mksquashfs); check that the path names the .sqsh file")
        }
        return fd
    }

    static func openFUSE() throws(Diagnostic) -> Int32 {
        let fd = Glibc.open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd >= 0 { return fd }
        let error = SystemCallError("open", path: "/dev/fuse")
        switch error.code {
        case ENOENT, ENODEV, ENXIO:
            throw Diagnostic(
                kind: .unavailable, message: "no /dev/fuse on this machine: \(error.reason)",
                hint: "load the fuse kernel module (modprobe fuse) or ask the site to provide /dev/fuse")
        default:
            throw Diagnostic(
                kind: .unavailable, message: "cannot open /dev/fuse: \(error.reason)",
                hint: "/dev/fuse must be readable and writable by every user (mode 0666, as udev sets it): chmod 666 /dev/fuse")
        }
    }

    /// What to do when the kernel or squashfuse cannot read an image's tables or blocks.
    static func damagedHint(_ path: String) -> String {
        "the image \(path) may be damaged (reading it failed): `unsquashfs -l \(path)` checks it; "
            + "build it again (img-squash --force, or remove it from the image store) or copy it again"
    }

    /// Mounts the image read-only at `target` (a path in this mount namespace).
    public func mount(at target: String, what: String) throws(Diagnostic) {
        let flags = UInt(MS_RDONLY | MS_NOSUID | MS_NODEV)
        switch backend {
        case .loop(let device, let node):
            do {
                try System.mount(node, target, "squashfs", flags, display: path)
            } catch {
                throw Diagnostic(
                    kind: .system, key: what, message: "cannot mount \(path) at \(target): \(error.reason)",
                    hint: error.code == EIO || error.code == EINVAL ? Self.damagedHint(path) : nil)
            }
            System.close(device)
            backend = .loop(device: -1, node: node)
        case .fuse(let status, let channel, let helper):
            let server = tbx_fuse_server_ready(status, helper)
            backend = .fuse(status: -1, channel: channel, helper: 0)
            if server == -ELIBACC {
                throw Diagnostic(
                    kind: .unavailable,
                    message: "cannot serve \(path) with FUSE: the FUSE server cannot load libsquashfuse_ll.so.0 (or libfuse3.so.3)",
                    hint: "install squashfuse's library (Debian: apt-get install libsquashfuse0 libfuse3-3)")
            }
            if server < 0 {
                throw Diagnostic(
                    kind: server == -EINVAL ? .invalid : .system, file: source, key: what,
                    message: server == -EINVAL
                        ? "\(path): libsquashfuse cannot read this image"
                        : "\(path): the FUSE server did not start: \(SystemCallError("start", code: -server).reason)")
            }
            let device = try Self.openFUSE()
            defer { System.close(device) }
            let data = "fd=\(device),rootmode=40000,user_id=\(getuid()),group_id=\(getgid()),default_permissions"
            do {
                try System.mount(path, target, "fuse.squashfuse", flags, data, display: path)
            } catch {
                throw Diagnostic(
                    kind: .system, key: what, message: "cannot mount \(path) at \(target) with FUSE: \(error.reason)",
                    hint: error.code == EPERM ? "the kernel must allow FUSE mounts in user namespaces (Linux 4.18 or later)" : nil)
            }
            let sent = tbx_fuse_server_go(channel, device)
            backend = .fuse(status: -1, channel: -1, helper: 0)
            if sent != 0 {
                throw Diagnostic(
                    kind: .system, key: what,
                    message: "the FUSE server for \(path) is gone: \(SystemCallError("sendmsg", code: -sent).reason)")
            }
        }
    }
}
