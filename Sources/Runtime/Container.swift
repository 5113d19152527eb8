import CRuntimeShim
import Glibc
import ToolboxCore
import ToolboxModel

/// The per-user directory ns-enter works in: `$XDG_RUNTIME_DIR/toolbox`, else
/// `${TMPDIR:-/tmp}/toolbox-<uid>`. Inside each container's mount namespace a private tmpfs is
/// mounted over its `mnt` subdirectory (the image's mount points, the overlay's upper layer): on
/// the host it stays an empty directory. `containers` holds the records of named containers.
public struct RuntimeDirectory: Sendable {
    public let base: String
    public var mountPoint: String { base + "/mnt" }
    public var records: String { base + "/containers" }

    public init(environment: [String: String]) {
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/"), Self.ownedDirectory(runtime) {
            base = runtime + "/toolbox"
        } else {
            let temporary = environment["TMPDIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/tmp"
            base = temporary + "/toolbox-\(getuid())"
        }
    }

    static func ownedDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR && info.st_uid == getuid()
    }

    /// Creates the directories (mode 0700) and checks that they belong to the caller.
    public func prepare() throws(Diagnostic) {
        for path in [base, mountPoint, records] {
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw Diagnostic(
                    kind: .output, message: "cannot create the runtime directory \(path): \(SystemCallError("mkdir").reason)",
                    hint: "set XDG_RUNTIME_DIR or TMPDIR to a directory you can write")
            }
            if !Self.ownedDirectory(path) {
                throw Diagnostic(
                    kind: .invalid, message: "the runtime directory \(path) is not a directory owned by you",
                    hint: "remove it, or set XDG_RUNTIME_DIR or TMPDIR elsewhere")
            }
        }
    }
}

/// What the hooks stage returns: the variables the hooks asked for.
public typealias HookStage = (_ rootfs: RootFilesystem) throws(Diagnostic) -> [(String, String)]

/// Builds a container in new namespaces of this process and makes its root file system this
/// process's root. The steps, in order: images checked and their FUSE servers started; user and
/// mount namespaces; a private tmpfs on the runtime directory; the image mounted read-only, an
/// overlay with a tmpfs upper layer on it (mount points can be created; changes vanish at exit);
/// system mounts; /etc/passwd and /etc/group entries for the user; the EDF's mounts in order; the
/// hooks; the root made read-only unless writable; pivot_root.
public struct ContainerBuilder {
    public var spec: ContainerSpec
    public var identity: Identity
    public var runtime: RuntimeDirectory
    public var source: String?
    public var hooks: HookStage?

    public init(spec: ContainerSpec, identity: Identity, runtime: RuntimeDirectory, source: String?, hooks: HookStage?) {
        self.spec = spec
        self.identity = identity
        self.runtime = runtime
        self.source = source
        self.hooks = hooks
    }

    /// The host files bound read-only into every container, when the host has them.
    static let hostFiles = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/machine-id"]

    public func build() throws(Diagnostic) -> ContainerEnvironment {
        // Everything that can be checked before touching the system.
        for (index, mount) in spec.mounts.enumerated() where mount.type != .tmpfs {
            var info = stat()
            if stat(mount.source, &info) != 0 {
                throw Diagnostic(
                    kind: .notFound, file: source, key: "mounts[\(index)]",
                    message: "mount source \(mount.source) does not exist: \(SystemCallError("stat").reason)",
                    hint: "mount sources must exist on the host before the job starts")
            }
        }
        try runtime.prepare()
        let root = try PreparedImage.prepare(spec.image, what: "image", identity: identity, source: source)
        var dataImages: [Int: PreparedImage] = [:]
        for (index, mount) in spec.mounts.enumerated() where mount.type == .squashfs {
            dataImages[index] = try PreparedImage.prepare(mount.source, what: "mounts[\(index)]", identity: identity, source: source)
        }

        try Namespaces.create(for: identity)
        try step("make the mounts private to the container") {
            try System.mount(nil, "/", nil, UInt(MS_REC | MS_SLAVE))
            try System.mount("tmpfs", runtime.mountPoint, "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0700")
            for name in ["lower", "upper", "work", "root"] where mkdir(runtime.mountPoint + "/" + name, 0o755) != 0 {
                throw SystemCallError("mkdir", path: runtime.mountPoint + "/" + name)
            }
        }
        let lower = runtime.mountPoint + "/lower"
        let rootPath = runtime.mountPoint + "/root"
        try root.mount(at: lower, what: "image")
        try mountOverlay(lower: lower, at: rootPath)
        let rootfs = try RootFilesystem(path: rootPath)

        try systemMounts(rootfs)
        try addUser(rootfs)
        for (index, mount) in spec.mounts.enumerated() {
            try userMount(mount, index: index, rootfs: rootfs, image: dataImages[index])
        }
        let hookVariables = try hooks?(rootfs) ?? []
        if !spec.writable {
            try step("make the root file system read-only") {
                if tbx_mount_setattr(AT_FDCWD, rootPath, 0, TBX_MOUNT_ATTR_RDONLY, 0) != 0 {
                    throw SystemCallError("mount_setattr", path: rootPath)
                }
            }
        }
        try step("switch to the container's root") {
            try System.check(chdir(rootPath), "chdir", rootPath)
            try System.check(tbx_pivot_root(".", "."), "pivot_root", rootPath)
            try System.check(umount2(".", Int32(MNT_DETACH)), "umount", "the host's root")
            try System.check(chdir("/"), "chdir", "/")
        }

        var environment = ContainerEnvironment(imageEnv: spec.config?.Env ?? [], edf: spec.env, hooks: hookVariables)
        if let workdir = spec.workdir, !workdir.isEmpty {
            environment.workdir = workdir
        } else if let workdir = spec.config?.WorkingDir, !workdir.isEmpty {
            environment.workdir = workdir
        }
        return environment
    }

    func step(_ what: String, _ body: () throws -> Void) throws(Diagnostic) {
        do {
            try body()
        } catch let diagnostic as Diagnostic {
            throw diagnostic
        } catch {
            throw Diagnostic(kind: .system, message: "cannot \(what): \(error)")
        }
    }

    func mountOverlay(lower: String, at target: String) throws(Diagnostic) {
        let upper = runtime.mountPoint + "/upper"
        let work = runtime.mountPoint + "/work"
        let options = "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)"
        var lastError = SystemCallError("mount", path: target, code: 0)
        // Inside a user namespace the upper layer's trusted.* attributes are not available:
        // Linux 5.11 and later then want userxattr.
        for extra in ["", ",userxattr"] {
            do {
                try System.mount("overlay", target, "overlay", UInt(MS_NOSUID | MS_NODEV), options + extra, display: "the overlay")
                return
            } catch {
                lastError = error
            }
        }
        throw Diagnostic(
            kind: .unavailable, message: "cannot mount the overlay over the image: \(lastError.reason)",
            hint: "the kernel must allow overlayfs in user namespaces (Linux 5.11 or later)")
    }

    func systemMounts(_ rootfs: RootFilesystem) throws(Diagnostic) {
        var proc = MountOptions()
        proc.nosuid = true
        proc.nodev = true
        proc.noexec = true
        var sys = proc
        sys.readOnly = true
        var dev = MountOptions()
        dev.nosuid = true
        var tmp = MountOptions()
        tmp.nosuid = true
        tmp.nodev = true
        tmp.data = ["mode=1777"]
        var hostFile = MountOptions()
        hostFile.readOnly = true
        hostFile.recursive = false
        hostFile.nosuid = true
        hostFile.nodev = true
        try step("mount /proc") { try rootfs.bind("/proc", to: "/proc", options: proc) }
        try step("mount /sys") { try rootfs.bind("/sys", to: "/sys", options: sys) }
        try step("mount /dev") { try rootfs.bind("/dev", to: "/dev", options: dev) }
        try step("mount /tmp") { try rootfs.tmpfs(at: "/tmp", options: tmp) }
        for file in Self.hostFiles where access(file, R_OK) == 0 {
            try step("mount \(file)") { try rootfs.bind(file, to: file, options: hostFile) }
        }
    }

    /// Adds the caller to the image's /etc/passwd and /etc/group (as enroot's 10-shadow hook).
    func addUser(_ rootfs: RootFilesystem) throws(Diagnostic) {
        let account = Account.current(identity: identity, rootfs: rootfs)
        try step("add the user to /etc/passwd") {
            let passwd = rootfs.read("/etc/passwd").flatMap { String(validating: $0, as: UTF8.self) } ?? ""
            if let line = account.passwdLine(adding: passwd) {
                try rootfs.write("/etc/passwd", passwd + (passwd.isEmpty || passwd.hasSuffix("\n") ? "" : "\n") + line)
            }
            let group = rootfs.read("/etc/group").flatMap { String(validating: $0, as: UTF8.self) } ?? ""
            if let line = account.groupLine(adding: group) {
                try rootfs.write("/etc/group", group + (group.isEmpty || group.hasSuffix("\n") ? "" : "\n") + line)
            }
        }
    }

    func userMount(_ mount: Mount, index: Int, rootfs: RootFilesystem, image: PreparedImage?) throws(Diagnostic) {
        let key = "mounts[\(index)]"
        if let image {
            try rootfs.squashfs(image, at: mount.destination, what: key)
            return
        }
        let parsed: MountOptions
        switch MountOptions.parse(mount.options, allowData: mount.type == .tmpfs) {
        case .success(let options): parsed = options
        case .failure(let unsupported):
            throw Diagnostic(
                kind: .invalid, file: source, key: key, message: "mount option '\(unsupported.option)' is not supported for a bind mount",
                hint: "use ro, rw, bind (not recursive), rbind, nosuid, nodev, noexec, or a propagation (private, slave, shared, r...)")
        }
        do {
            switch mount.type {
            case .bind: try rootfs.bind(mount.source, to: mount.destination, options: parsed)
            case .tmpfs: try rootfs.tmpfs(at: mount.destination, options: parsed)
            case .squashfs: break
            }
        } catch {
            throw Diagnostic(
                kind: .system, file: source, key: key,
                message: "cannot mount \(mount.source) at \(mount.destination): \(error)")
        }
    }
}

/// The caller's account as it appears inside the container.
struct Account {
    var name: String
    var uid: uid_t
    var gid: gid_t
    var groupName: String
    var gecos: String
    var home: String
    var shell: String

    static func current(identity: Identity, rootfs: RootFilesystem) -> Account {
        var name = "user\(identity.uid)"
        var gecos = ""
        var home = "/"
        var shell = "/bin/sh"
        if let entry = getpwuid(identity.uid) {
            name = String(cString: entry.pointee.pw_name)
            gecos = String(cString: entry.pointee.pw_gecos)
            home = String(cString: entry.pointee.pw_dir)
            let hostShell = String(cString: entry.pointee.pw_shell)
            if !hostShell.isEmpty, (try? System.openInRoot(rootfs.fd, hostShell, TBX_O_PATH)).map({ System.close($0); return true }) ?? false {
                shell = hostShell
            }
        }
        var groupName = name
        if let entry = getgrgid(identity.gid) { groupName = String(cString: entry.pointee.gr_name) }
        if identity.innerUID == 0 {
            name = "root"
            home = "/root"
        }
        if identity.innerGID == 0 { groupName = "root" }
        return Account(
            name: name, uid: identity.innerUID, gid: identity.innerGID, groupName: groupName,
            gecos: gecos.replacingColons(), home: home, shell: shell)
    }

    /// The passwd line to append, or nil when the uid is already there.
    func passwdLine(adding passwd: String) -> String? {
        for line in passwd.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count > 2, fields[2] == "\(uid)" { return nil }
        }
        return "\(name):x:\(uid):\(gid):\(gecos):\(home):\(shell)\n"
    }

    func groupLine(adding group: String) -> String? {
        for line in group.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count > 2, fields[2] == "\(gid)" { return nil }
        }
        return "\(groupName):x:\(gid):\n"
    }
}

extension String {
    fileprivate func replacingColons() -> String { String(map { $0 == ":" || $0 == "\n" ? " " : $0 }) }
}
