import CRuntimeShim
import Glibc
import ToolboxCore

/// The container's root file system while it is being built: a descriptor of its top directory
/// through which every path inside it is resolved as if it were `/` (symbolic links in the image
/// cannot lead to the host), and the operations that create mount points and mount onto them.
///
/// Files and mount points are created, and files written, only on the image's overlay and on the
/// tmpfs mounts made here: an image symbolic link into /dev, /proc or a bind mount of the host
/// cannot make the runtime create or change anything on the host.
public final class RootFilesystem {
    /// The root directory's path in ns-enter's mount namespace (for hooks: ENROOT_ROOTFS).
    public let path: String
    /// An O_PATH descriptor of the root directory.
    public let fd: Int32
    /// The mounts (ids) in which the runtime may create and write: the root, its own tmpfs mounts.
    var writableMounts: Set<UInt64> = []

    public init(path: String) throws(Diagnostic) {
        self.path = path
        do {
            fd = try System.open(path, TBX_O_PATH | O_DIRECTORY)
        } catch {
            throw Diagnostic(kind: .system, message: "cannot open the root file system: \(error)")
        }
        writableMounts.insert(tbx_mount_id(fd))
    }

    deinit { System.close(fd) }

    /// The ids of the mounts in which files may be created and written (for the helpers that
    /// hooks run: HOOK_RUN_WRITABLE_MOUNTS).
    public var writableMountIDs: Set<UInt64> { writableMounts }

    /// Allows creating and writing in more mounts: the tmpfs mounts ns-enter made (/dev, /tmp,
    /// the EDF's), as HOOK_RUN_WRITABLE_MOUNTS tells a hook's helper (comma separated ids).
    public func allowWrites(in list: String?) {
        for id in (list ?? "").split(separator: ",").compactMap({ UInt64($0) }) where id != 0 { writableMounts.insert(id) }
    }

    /// Refuses to create or write through `fd` unless it is on the root or one of our tmpfs mounts.
    func requireWritable(_ fd: Int32, _ path: String) throws(SystemCallError) {
        let mount = tbx_mount_id(fd)
        if mount == 0 || !writableMounts.contains(mount) {
            throw SystemCallError("create or change (it is on a mount from the host)", path: path, code: EXDEV)
        }
    }

    public enum TargetKind {
        case directory, file
    }

    /// Opens `target` (an absolute path in the container) as an O_PATH descriptor, creating it and
    /// its missing parents as `kind` (parents always directories) when `create` is set. Symbolic
    /// links on the way are followed inside the container, as a chroot would: a dangling one
    /// gets its target created in the container, never on the host.
    public func target(_ target: String, kind: TargetKind, create: Bool = true) throws(SystemCallError) -> Int32 {
        do {
            return try System.openInRoot(self.fd, target, TBX_O_PATH)
        } catch {
            if error.code != ENOENT || !create { throw error }
        }
        var path = Self.components(target)
        var index = 0
        var hops = 0
        while index < path.count {
            let parent = "/" + path[..<index].joined(separator: "/")
            let prefix = "/" + path[...index].joined(separator: "/")
            let name = path[index]
            do {
                System.close(try System.openInRoot(self.fd, prefix, TBX_O_PATH))
                index += 1
                continue
            } catch {
                if error.code != ENOENT { throw error }
            }
            let parentFD = try System.openInRoot(self.fd, parent, TBX_O_PATH | O_DIRECTORY)
            defer { System.close(parentFD) }
            try requireWritable(parentFD, prefix)
            // A dangling symbolic link: go on with its target, resolved inside the container.
            var link = [CChar](repeating: 0, count: Int(PATH_MAX))
            let length = readlinkat(parentFD, name, &link, link.count - 1)
            if length > 0 {
                hops += 1
                if hops > 40 { throw SystemCallError("resolve", path: target, code: ELOOP) }
                let destination = String(decoding: link[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let base = destination.hasPrefix("/") ? [] : Array(path[..<index])
                let rest = path[(index + 1)...].joined(separator: "/")
                path = Self.components("/" + (base + [destination]).joined(separator: "/") + "/" + rest)
                index = 0
                continue
            }
            let last = index == path.count - 1
            if last && kind == .file {
                let created = openat(parentFD, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o644)
                if created < 0 { throw SystemCallError("create", path: prefix) }
                System.close(created)
            } else if mkdirat(parentFD, name, 0o755) != 0 && errno != EEXIST {
                throw SystemCallError("create directory", path: prefix)
            }
        }
        return try System.openInRoot(self.fd, "/" + path.joined(separator: "/"), TBX_O_PATH)
    }

    /// The components of a path inside the container, `.` dropped and `..` applied (never above
    /// the root).
    static func components(_ path: String) -> [String] {
        var result: [String] = []
        for component in path.split(separator: "/") {
            switch component {
            case ".": continue
            case "..": if !result.isEmpty { result.removeLast() }
            default: result.append(String(component))
            }
        }
        return result
    }

    /// Reads a file of the container (small files: /etc/passwd), or nil when it does not exist.
    public func read(_ file: String, limit: Int = 1 << 20) -> [UInt8]? {
        guard let fd = try? System.openInRoot(self.fd, file, O_RDONLY | O_NONBLOCK) else { return nil }
        defer { System.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, (try? requireWritable(fd, file)) != nil else {
            return nil
        }
        return System.readAll(fd, limit: limit)
    }

    /// Whether a path exists in the container (links followed inside it).
    public func exists(_ path: String) -> Bool {
        guard let fd = try? System.openInRoot(self.fd, path, TBX_O_PATH) else { return false }
        System.close(fd)
        return true
    }

    /// The path (inside the container) of the file that `path` leads to, links followed inside
    /// the container; nil when it does not exist.
    public func resolve(_ path: String) -> String? {
        guard let fd = try? System.openInRoot(self.fd, path, TBX_O_PATH) else { return nil }
        defer { System.close(fd) }
        guard let root = FileReader.link(System.fdPath(self.fd)), let host = FileReader.link(System.fdPath(fd)) else { return nil }
        if host == root { return "/" }
        guard host.hasPrefix(root == "/" ? "/" : root + "/") else { return nil }
        return root == "/" ? host : String(host.dropFirst(root.count))
    }

    /// The names in a directory of the container (none when it does not exist).
    public func list(_ directory: String) -> [String] {
        guard let fd = try? System.openInRoot(self.fd, directory, O_RDONLY | O_DIRECTORY) else { return [] }
        return FileReader.names(inDirectoryAt: fd) ?? []
    }

    /// Creates (or replaces) a symbolic link `path` to `destination` in the container.
    public func symlink(_ destination: String, at path: String) throws(SystemCallError) {
        var parts = Self.components(path)
        guard let name = parts.popLast() else { throw SystemCallError("symlink", path: path, code: EINVAL) }
        // The parent's O_PATH descriptor serves the *at calls: the path is not resolved again.
        let parent = try target("/" + parts.joined(separator: "/"), kind: .directory)
        defer { System.close(parent) }
        try requireWritable(parent, path)
        if symlinkat(destination, parent, name) == 0 { return }
        guard errno == EEXIST else { throw SystemCallError("symlink", path: path) }
        try System.check(unlinkat(parent, name, 0), "unlink", path)
        try System.check(symlinkat(destination, parent, name), "symlink", path)
    }

    /// Replaces the content of a regular file of the container (created when missing).
    public func write(_ file: String, _ text: String) throws(SystemCallError) {
        let placeholder = try target(file, kind: .file)
        System.close(placeholder)
        let fd = try System.openInRoot(self.fd, file, O_WRONLY | O_NONBLOCK)
        defer { System.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw SystemCallError("write", path: file, code: EINVAL)
        }
        try requireWritable(fd, file)
        try System.check(ftruncate(fd, 0), "truncate", file)
        try System.write(fd, text, path: file)
    }
}

/// A mount option the runtime does not know.
public struct UnsupportedOption: Error {
    public var option: String
}

/// How one mount is made: the parsed options of an EDF or fstab entry.
public struct MountOptions: Equatable, Sendable {
    public var readOnly = false
    public var recursive = true
    public var nosuid = false
    public var nodev = false
    public var noexec = false
    /// MS_PRIVATE, MS_SLAVE, MS_SHARED or MS_UNBINDABLE, with MS_REC for the r- forms.
    public var propagation: UInt = 0
    /// Options passed to the file system (tmpfs: size=, mode=, ...).
    public var data: [String] = []
    /// Access-time attributes (MOUNT_ATTR_NOATIME, ...).
    public var extraAttributes: UInt64 = 0

    public init() {}

    public static let propagations: [String: UInt] = [
        "private": UInt(MS_PRIVATE), "rprivate": UInt(MS_PRIVATE | MS_REC),
        "slave": UInt(MS_SLAVE), "rslave": UInt(MS_SLAVE | MS_REC),
        "shared": UInt(MS_SHARED), "rshared": UInt(MS_SHARED | MS_REC),
        "unbindable": UInt(MS_UNBINDABLE), "runbindable": UInt(MS_UNBINDABLE | MS_REC),
    ]

    /// Parses options; unknown ones are returned as `data` when `allowData`, else rejected.
    public static func parse(_ options: [String], allowData: Bool) -> Result<MountOptions, UnsupportedOption> {
        var result = MountOptions()
        for option in options {
            switch option {
            case "ro": result.readOnly = true
            case "rw": result.readOnly = false
            case "bind", "norbind", "nonrecursive": result.recursive = false
            case "rbind", "recursive": result.recursive = true
            case "nosuid": result.nosuid = true
            case "nodev": result.nodev = true
            case "noexec": result.noexec = true
            case "noatime": result.extraAttributes |= 0x10  // MOUNT_ATTR_NOATIME
            case "strictatime": result.extraAttributes |= 0x20  // MOUNT_ATTR_STRICTATIME
            case "nodiratime": result.extraAttributes |= 0x80  // MOUNT_ATTR_NODIRATIME
            case "suid", "dev", "exec", "defaults", "none", "", "atime", "relatime", "norelatime": break
            case _ where option.hasPrefix("x-create="): break
            default:
                if let propagation = propagations[option] {
                    result.propagation = propagation
                } else if allowData {
                    result.data.append(option)
                } else {
                    return .failure(UnsupportedOption(option: option))
                }
            }
        }
        return .success(result)
    }

    var attributes: UInt64 {
        var attributes = extraAttributes
        if readOnly { attributes |= TBX_MOUNT_ATTR_RDONLY }
        if nosuid { attributes |= TBX_MOUNT_ATTR_NOSUID }
        if nodev { attributes |= TBX_MOUNT_ATTR_NODEV }
        if noexec { attributes |= 0x8 }  // MOUNT_ATTR_NOEXEC
        return attributes
    }
}

extension RootFilesystem {
    /// Bind-mounts a host path onto `target` in the container (created to match the source).
    public func bind(_ source: String, to target: String, options: MountOptions, create: Bool = true) throws(SystemCallError) {
        var info = stat()
        if stat(source, &info) != 0 { throw SystemCallError("stat", path: source) }
        let isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
        let fd = try self.target(target, kind: isDirectory ? .directory : .file, create: create)
        defer { System.close(fd) }
        let at = System.fdPath(fd)
        var flags = UInt(MS_BIND)
        if options.recursive { flags |= UInt(MS_REC) }
        try System.mount(source, at, nil, flags, display: target)
        try finish(target: target, options: options)
    }

    /// Unmounts (lazily, with what is mounted below it) the mount on top of `target`, a path
    /// resolved inside the root. EINVAL: nothing is mounted there; ENOENT: no such path.
    public func detach(_ target: String) throws(SystemCallError) {
        let fd = try System.openInRoot(self.fd, target, TBX_O_PATH)
        defer { System.close(fd) }
        try System.check(umount2(System.fdPath(fd), Int32(MNT_DETACH)), "umount", target)
    }

    /// Mounts a fresh tmpfs at `target`.
    public func tmpfs(at target: String, options: MountOptions, create: Bool = true) throws(SystemCallError) {
        try mount("tmpfs", type: "tmpfs", at: target, options: options, create: create)
    }

    /// Mounts a file system of `type` (tmpfs, mqueue, ...) at `target`.
    public func mount(_ source: String, type: String, at target: String, options: MountOptions, create: Bool = true)
        throws(SystemCallError)
    {
        let fd = try self.target(target, kind: .directory, create: create)
        defer { System.close(fd) }
        var flags: UInt = 0
        if options.readOnly { flags |= UInt(MS_RDONLY) }
        if options.nosuid { flags |= UInt(MS_NOSUID) }
        if options.nodev { flags |= UInt(MS_NODEV) }
        if options.noexec { flags |= UInt(MS_NOEXEC) }
        if options.extraAttributes & 0x10 != 0 { flags |= UInt(MS_NOATIME) }
        if options.extraAttributes & 0x20 != 0 { flags |= UInt(MS_STRICTATIME) }
        if options.extraAttributes & 0x80 != 0 { flags |= UInt(MS_NODIRATIME) }
        let data = options.data.isEmpty ? nil : options.data.joined(separator: ",")
        try System.mount(source, System.fdPath(fd), type, flags, data, display: target)
        if type == "tmpfs", let mounted = try? System.openInRoot(self.fd, target, TBX_O_PATH) {
            writableMounts.insert(tbx_mount_id(mounted))
            System.close(mounted)
        }
        if options.propagation != 0 { try finish(target: target, options: MountOptions.propagationOnly(options.propagation)) }
    }

    /// Mounts a prepared squashfs image read-only at `target`.
    public func squashfs(_ image: PreparedImage, at target: String, what: String) throws(Diagnostic) {
        let fd: Int32
        do {
            fd = try self.target(target, kind: .directory)
        } catch {
            throw Diagnostic(kind: .system, key: what, message: "cannot create the mount point \(target): \(error.reason)")
        }
        defer { System.close(fd) }
        try image.mount(at: System.fdPath(fd), what: what)
    }

    /// Changes the mount whose root is `target` (EINVAL when nothing is mounted there): its
    /// attributes and propagation, as a bind mount's remount does, and with `fileSystem` options
    /// (tmpfs's size=, ...) a remount of the file system itself.
    public func change(_ target: String, options: MountOptions, fileSystem data: [String]?) throws(SystemCallError) {
        let fd = try System.openInRoot(self.fd, target, TBX_O_PATH)
        defer { System.close(fd) }
        let parent = try System.openInRoot(self.fd, target + "/..", TBX_O_PATH)
        let sameMount = tbx_mount_id(fd) == tbx_mount_id(parent)
        System.close(parent)
        if sameMount && target != "/" { throw SystemCallError("remount", path: target, code: EINVAL) }
        if let data, !data.isEmpty {
            var flags = UInt(MS_REMOUNT)
            if options.readOnly { flags |= UInt(MS_RDONLY) }
            if options.nosuid { flags |= UInt(MS_NOSUID) }
            if options.nodev { flags |= UInt(MS_NODEV) }
            if options.noexec { flags |= UInt(MS_NOEXEC) }
            try System.mount(nil, System.fdPath(fd), nil, flags, data.joined(separator: ","), display: target)
        }
        try finish(target: target, options: options)
    }

    /// Applies attributes (read-only, nosuid, ...) and propagation to the mount now at `target`.
    func finish(target: String, options: MountOptions) throws(SystemCallError) {
        let fd = try System.openInRoot(self.fd, target, TBX_O_PATH)
        defer { System.close(fd) }
        let attributes = options.attributes
        if attributes != 0 {
            // Changing the access-time mode needs the whole MOUNT_ATTR__ATIME field cleared.
            let clear: UInt64 = attributes & 0x70 != 0 ? 0x70 : 0
            if tbx_mount_setattr(AT_FDCWD, System.fdPath(fd), options.recursive ? 1 : 0, attributes, clear) != 0 {
                throw SystemCallError("set the mount attributes of", path: target)
            }
        }
        if options.propagation != 0 {
            try System.mount(nil, System.fdPath(fd), nil, options.propagation, display: target)
        }
    }
}

extension MountOptions {
    public static func propagationOnly(_ propagation: UInt) -> MountOptions {
        var options = MountOptions()
        options.propagation = propagation
        options.recursive = false
        return options
    }
}
