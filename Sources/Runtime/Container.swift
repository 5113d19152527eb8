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
        if base.contains(",") || base.contains(":") {
            throw Diagnostic(
                kind: .invalid, message: "the runtime directory \(base) contains ',' or ':', which overlayfs options cannot carry",
                hint: "set XDG_RUNTIME_DIR or TMPDIR to a path without them")
        }
        for path in [base, mountPoint, records] {
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                let failure = SystemCallError("mkdir")
                throw Diagnostic(
                    kind: .output, message: "cannot create the runtime directory \(path): \(failure.reason)",
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

/// The hooks stage: given the root file system and the container's variables so far (image and
/// EDF), returns the variables the hooks asked for and the services they started.
public typealias HookStage = (_ rootfs: RootFilesystem, _ soFar: ContainerEnvironment) throws(Diagnostic) -> HookStageResult

public struct HookStageResult {
    public var variables: [(String, String)]
    /// Processes the hooks started inside the container, stopped when it ends.
    public var services: [pid_t]

    public init(variables: [(String, String)], services: [pid_t]) {
        self.variables = variables
        self.services = services
    }
}

/// Builds a container in new namespaces of this process and makes its root file system this
/// process's root. The steps, in order: images checked and their FUSE servers started; user and
/// mount namespaces; a private tmpfs on the runtime directory; the image mounted read-only;
/// /etc/passwd and /etc/group entries for the user written into the upper layer; an overlay with
/// that tmpfs upper layer on the image (mount points can be created; changes vanish at exit);
/// system mounts; the EDF's mounts in order; the hooks; the root made read-only unless writable;
/// pivot_root.
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

    /// The built container: its environment, and the processes (fuse-overlayfs, the hooks'
    /// services) that must be stopped when it ends.
    public struct Built {
        public var environment: ContainerEnvironment
        public var helpers: [pid_t]
    }

    public func build() throws(Diagnostic) -> Built {
        // Everything that can be checked before touching the system.
        for (index, mount) in spec.mounts.enumerated() where mount.type == .bind || mount.type == .squashfs {
            var info = stat()
            if stat(mount.source, &info) != 0 {
                let failure = SystemCallError("stat")
                throw Diagnostic(
                    kind: .notFound, file: source, key: "mounts[\(index)]",
                    message: "mount source \(mount.source) does not exist: \(failure.reason)",
                    hint: "mount sources must exist on the host before the job starts")
            }
        }
        try runtime.prepare()
        let root = try PreparedImage.prepare(spec.image, what: "image", identity: identity, source: source)
        var dataImages: [Int: PreparedImage] = [:]
        for (index, mount) in spec.mounts.enumerated() where mount.type == .squashfs {
            dataImages[index] = try PreparedImage.prepare(mount.source, what: "mounts[\(index)]", identity: identity, source: source)
        }

        Timings.mark("images prepared")
        try Namespaces.create(for: identity)
        Timings.mark("namespaces")
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
        // squashfuse answers "no such file" for what it cannot decode, also for the root: a
        // damaged image would show as an empty tree ("command not found").
        var rootInfo = stat()
        let rootProblem =
            stat(lower, &rootInfo) != 0
            ? SystemCallError("stat").reason : (rootInfo.st_mode & S_IFMT) != S_IFDIR ? "not a directory" : nil
        if let rootProblem {
            throw Diagnostic(
                kind: .invalid, file: source, key: "image", message: "cannot read the root directory of \(spec.image): \(rootProblem)",
                hint: PreparedImage.damagedHint(spec.image))
        }
        Timings.mark("image mounted")
        let account = Account.current(identity: identity, root: lower)
        let prepared = prepareUpper(lower: lower, upper: runtime.mountPoint + "/upper", account: account)
        Timings.mark("upper layer")
        let overlayHelper = try mountOverlay(lower: lower, at: rootPath)
        Timings.mark("overlay")
        var services: [pid_t] = []
        do throws(Diagnostic) {
            let rootfs = try RootFilesystem(path: rootPath)

            // The user's entries first: the system mounts bring host paths into the tree.
            try addUser(rootfs, account: account, skipping: prepared)
            Timings.mark("passwd and group")
            try systemMounts(rootfs)
            Timings.mark("system mounts")
            for (index, mount) in spec.mounts.enumerated() {
                try userMount(mount, index: index, rootfs: rootfs, image: dataImages[index])
            }
            Timings.mark("mounts")
            // An image without its config beside it (one enroot imported, whose Env is in the
            // image's /etc/environment, as enroot keeps it): the variables from there.
            let imageEnv = spec.config?.Env ?? (spec.foreignImage ? Self.environmentFile(rootfs) : [])
            var environment = ContainerEnvironment(imageEnv: imageEnv, edf: spec.env)
            if let hooks {
                let result = try hooks(rootfs, environment)
                services = result.services
                for (name, value) in result.variables { environment.assign(name, value) }
            }
            Timings.mark("hooks")
            // An image's WorkingDir that its tree lacks is made, as Docker makes a WORKDIR (one the
            // EDF or --workdir names must exist).
            // A relative one is taken from the root, as Docker does.
            let imageWorkdir = spec.config?.WorkingDir.flatMap { $0.isEmpty ? nil : ($0.hasPrefix("/") ? $0 : "/" + $0) }
            if (spec.workdir ?? "").isEmpty, let imageWorkdir {
                if let fd = try? rootfs.target(imageWorkdir, kind: .directory) { System.close(fd) }
                var info = stat()
                let fd = try? System.openInRoot(rootfs.fd, imageWorkdir, TBX_O_PATH)
                defer { if let fd { System.close(fd) } }
                guard let fd, fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
                    throw Diagnostic(
                        kind: .invalid, message: "the image's WorkingDir \(imageWorkdir) is not a directory in the container",
                        hint: "set workdir in the EDF (or --workdir) to a directory of the image or a mount")
                }
            }
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

            Timings.mark("pivot_root")
            if let workdir = spec.workdir, !workdir.isEmpty {
                environment.workdir = workdir
            } else if let imageWorkdir {
                environment.workdir = imageWorkdir
            }
            return Built(environment: environment, helpers: (overlayHelper.map { [$0] } ?? []) + services)
        } catch {
            // fuse-overlayfs lives in a mount namespace of its own, the hooks' services in the
            // container's: stop them, or they stay.
            System.stop((overlayHelper.map { [$0] } ?? []) + services, groups: true)
            throw error
        }
    }

    func step(_ what: String, _ body: () throws -> Void) throws(Diagnostic) {
        do {
            try body()
        } catch let diagnostic as Diagnostic {
            throw diagnostic
        } catch let failure as SystemCallError where failure.code == EIO {
            // Reading the container's tree failed: a damaged image (squashfs has no checksums,
            // the kernel and squashfuse notice only what they cannot decode).
            throw Diagnostic(kind: .system, message: "cannot \(what): \(failure)", hint: PreparedImage.damagedHint(spec.image))
        } catch {
            throw Diagnostic(kind: .system, message: "cannot \(what): \(error)")
        }
    }

    /// The overlay: the kernel's (in a user namespace since Linux 5.11), else fuse-overlayfs,
    /// whose process is returned so that the container's end can stop it.
    /// `NS_ENTER_OVERLAY=fuse-overlayfs` skips the kernel's.
    func mountOverlay(lower: String, at target: String) throws(Diagnostic) -> pid_t? {
        let upper = runtime.mountPoint + "/upper"
        let work = runtime.mountPoint + "/work"
        let options = "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)"
        var lastError = SystemCallError("mount", path: target, code: 0)
        if ProcessEnvironment.current["NS_ENTER_OVERLAY"] != "fuse-overlayfs" {
            // Inside a user namespace the upper layer's trusted.* attributes are not available:
            // Linux 5.11 and later take userxattr (user.overlay.* on the tmpfs upper layer). The
            // kernel mounts without it too, but then cannot mark a directory made in the
            // container opaque: renaming it into a directory of the image fails with EXDEV
            // (dpkg's unpacking, `apt-get install`). Real root keeps trusted.*.
            for extra in identity.privileged ? ["", ",userxattr"] : [",userxattr", ""] {
                do {
                    try System.mount("overlay", target, "overlay", UInt(MS_NOSUID | MS_NODEV), options + extra, display: "the overlay")
                    return nil
                } catch {
                    lastError = error
                }
            }
        }
        let path = ProcessEnvironment.current["PATH"] ?? "/usr/bin:/bin"
        guard let program = (path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"])
            .map({ String($0) + "/fuse-overlayfs" }).first(where: { access($0, X_OK) == 0 })
        else {
            throw Diagnostic(
                kind: .unavailable,
                message: "cannot mount the overlay over the image: \(lastError.code == 0 ? "kernel overlay not wanted" : lastError.reason), and fuse-overlayfs is not installed",
                hint: "the kernel must allow overlayfs in user namespaces (Linux 5.11 or later); else install fuse-overlayfs")
        }
        return try mountFUSEOverlay(program: program, options: options, at: target)
    }

    func mountFUSEOverlay(program: String, options: String, at target: String) throws(Diagnostic) -> pid_t {
        var parent = stat()
        _ = stat(runtime.mountPoint, &parent)
        // fuse-overlayfs runs in a mount namespace of its own: pivot_root moves every process whose
        // root is the old root, and a FUSE server whose root is its own file system deadlocks. Its
        // mount reaches this namespace through the runtime tmpfs, shared for that moment.
        let shared = runtime.mountPoint
        do {
            try System.mount(nil, shared, nil, UInt(MS_SHARED))
        } catch {
            throw Diagnostic(kind: .system, message: "cannot share \(shared) with fuse-overlayfs: \(error.reason)")
        }
        let argv = CStrings([program, "-f", "-o", options, target])
        let helper = argv.use { tbx_spawn_detached($0, 1) }
        if helper < 0 {
            throw Diagnostic(kind: .system, message: "cannot start \(program): \(SystemCallError("fork", code: -helper).reason)")
        }
        // Mounted when the target's device differs from its parent directory's.
        for _ in 0..<10_000 {
            var info = stat()
            if stat(target, &info) == 0 && info.st_dev != parent.st_dev {
                do throws(SystemCallError) {
                    try System.mount(nil, target, nil, UInt(MS_PRIVATE))
                    try System.mount(nil, shared, nil, UInt(MS_PRIVATE))
                    if tbx_mount_setattr(AT_FDCWD, target, 0, TBX_MOUNT_ATTR_NOSUID | TBX_MOUNT_ATTR_NODEV, 0) != 0 {
                        throw SystemCallError("mount_setattr", path: target)
                    }
                } catch {
                    kill(helper, SIGKILL)
                    throw Diagnostic(kind: .system, message: "cannot make the overlay private: \(error.reason)")
                }
                return helper
            }
            // Gone (also a zombie: it is a detached process nobody waits for): it failed.
            if !System.running(helper) { break }
            usleep(1000)
        }
        kill(helper, SIGKILL)
        throw Diagnostic(
            kind: .unavailable, message: "\(program) could not mount the overlay over the image",
            hint: "run it by hand to see why: \(program) -f -o \(options) DIR")
    }

    func systemMounts(_ rootfs: RootFilesystem) throws(Diagnostic) {
        // /proc and /dev keep the host's flags (nosuid, noexec, ...: locked in a user namespace);
        // /sys is made read-only, recursively.
        let proc = MountOptions()
        var sys = MountOptions()
        sys.readOnly = true
        sys.nosuid = true
        sys.nodev = true
        sys.noexec = true
        let dev = MountOptions()
        var tmp = MountOptions()
        tmp.nosuid = true
        tmp.nodev = true
        tmp.data = ["mode=1777"]
        var hostFile = MountOptions()
        hostFile.readOnly = true
        hostFile.recursive = false
        hostFile.nosuid = true
        hostFile.nodev = true
        // Where each system mount went, inside the container: an image whose /sys or /run leads
        // to its root, or whose /dev leads to /tmp, would have one cover the image or another.
        var placed: [String: String] = [:]
        func place(_ path: String, kind: RootFilesystem.TargetKind = .directory) throws(Diagnostic) {
            try step("mount \(path)") { System.close(try rootfs.target(path, kind: kind)) }
            guard let resolved = rootfs.resolve(path) else { return }
            if resolved == "/" || placed[resolved] != nil {
                let onto = resolved == "/" ? "the container's root" : "\(resolved), where \(placed[resolved] ?? "") is mounted"
                throw Diagnostic(
                    kind: .system, message: "cannot mount \(path): in the image it leads to \(onto)",
                    hint: "a symbolic link of the image (\(path) or one of its parents) points where no system directory can be; fix the image")
            }
            placed[resolved] = path
        }
        try place("/proc")
        try step("mount /proc") { try rootfs.bind("/proc", to: "/proc", options: proc) }
        try place("/sys")
        try step("mount /sys") { try rootfs.bind("/sys", to: "/sys", options: sys) }
        try place("/dev")
        if Self.restrictedDevices(ProcessEnvironment.current) {
            try step("mount /dev") { try restrictedDev(rootfs) }
        } else {
            try step("mount /dev") { try rootfs.bind("/dev", to: "/dev", options: dev) }
        }
        try place("/tmp")
        try step("mount /tmp") { try rootfs.tmpfs(at: "/tmp", options: tmp) }
        // /var/run (on Debian-like images a link to /run: the tmpfs goes there) and /var/lock:
        // tmpfs mounts of their own, as enroot's 10-system.fstab makes them (daemons, MPI and
        // sshd write there, also in a read-only container).
        var run = MountOptions()
        run.nosuid = true
        run.nodev = true
        run.data = ["mode=755"]
        try place("/var/run")
        try step("mount /var/run") { try rootfs.tmpfs(at: "/var/run", options: run) }
        // On Debian-like images /var/lock is a link into /run: a directory in the tmpfs just made
        // does (a mount less at every start); elsewhere a tmpfs of its own.
        try step("mount /var/lock") {
            let fd = try rootfs.target("/var/lock", kind: .directory, create: true)
            let mount = tbx_mount_id(fd)
            System.close(fd)
            if mount == tbx_mount_id(rootfs.fd) || !rootfs.writableMounts.contains(mount) {
                try rootfs.tmpfs(at: "/var/lock", options: run)
            }
        }
        for file in Self.hostFiles where access(file, R_OK) == 0 {
            try place(file, kind: .file)
            try step("mount \(file)") { try rootfs.bind(file, to: file, options: hostFile) }
        }
    }

    /// `ENROOT_RESTRICT_DEV=y` (as enroot): a /dev of its own instead of the host's, with only
    /// the basic devices; hooks add the devices they are for (GPUs, the network's).
    static func restrictedDevices(_ environment: [String: String]) -> Bool {
        ["y", "yes", "1", "true"].contains(environment["ENROOT_RESTRICT_DEV"]?.lowercased() ?? "")
    }

    func restrictedDev(_ rootfs: RootFilesystem) throws {
        var options = MountOptions()
        options.nosuid = true
        options.noexec = true
        options.data = ["mode=0755"]
        try rootfs.tmpfs(at: "/dev", options: options)
        let bind = MountOptions()
        for name in ["null", "zero", "full", "random", "urandom", "tty", "shm", "mqueue"] where access("/dev/" + name, F_OK) == 0 {
            try rootfs.bind("/dev/" + name, to: "/dev/" + name, options: bind)
        }
        // Pseudo-terminals from a devpts instance of the container's own (the host's is mounted
        // with ptmxmode=000, its ptmx usable only through the host's /dev/ptmx, found beside it).
        var pts = MountOptions()
        pts.nosuid = true
        pts.noexec = true
        pts.data = ["newinstance", "ptmxmode=0666", "mode=0620"]
        do {
            try rootfs.mount("devpts", type: "devpts", at: "/dev/pts", options: pts, create: true)
        } catch {
            // A kernel that refuses: the host's instance, as before.
            if access("/dev/pts", F_OK) == 0 { try rootfs.bind("/dev/pts", to: "/dev/pts", options: bind) }
        }
        for (name, destination) in [
            ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            try rootfs.symlink(destination, at: "/dev/" + name)
        }
    }

    /// Before the overlay is mounted, writes what the container needs from /etc straight into
    /// its upper layer (a plain directory on the tmpfs): /etc/passwd and /etc/group with the
    /// caller added, and empty files as mount points for the host files the image lacks. No
    /// copy-up through the overlay, no extra FUSE requests. Only where the image's /etc is a
    /// real directory and the files are not symbolic links; the rest is done through the
    /// overlay later. Returns the files it wrote.
    func prepareUpper(lower: String, upper: String, account: Account) -> Set<String> {
        var done: Set<String> = []
        let lowerFD = Glibc.open(lower, TBX_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard lowerFD >= 0 else { return done }
        defer { System.close(lowerFD) }
        var info = stat()
        let etcState = fstatat(lowerFD, "etc", &info, AT_SYMLINK_NOFOLLOW) == 0 ? info.st_mode & S_IFMT : 0
        guard etcState == 0 || etcState == S_IFDIR else { return done }
        let upperEtc = upper + "/etc"
        guard mkdir(upperEtc, etcState == S_IFDIR ? info.st_mode & 0o7777 : 0o755) == 0 else { return done }
        for name in ["passwd", "group"] {
            var existing = stat()
            let state = fstatat(lowerFD, "etc/" + name, &existing, AT_SYMLINK_NOFOLLOW) == 0 ? existing.st_mode & S_IFMT : 0
            guard state == 0 || state == S_IFREG else { continue }
            var content = ""
            if state == S_IFREG {
                let fd = openat(lowerFD, "etc/" + name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { continue }
                content = System.readAll(fd).flatMap { String(validating: $0, as: UTF8.self) } ?? ""
                System.close(fd)
            }
            guard let text = account.updated(name, content) else {
                done.insert("/etc/" + name)
                continue
            }
            let mode = state == S_IFREG ? existing.st_mode & 0o7777 : 0o644
            let fd = Glibc.open(upperEtc + "/" + name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            guard fd >= 0 else { continue }
            if (try? System.write(fd, text, path: name)) != nil { done.insert("/etc/" + name) }
            System.close(fd)
        }
        for file in Self.hostFiles where access(file, R_OK) == 0 {
            let name = String(file.dropFirst("/etc/".count))
            if fstatat(lowerFD, "etc/" + name, &info, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT {
                let fd = Glibc.open(upperEtc + "/" + name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                if fd >= 0 { System.close(fd) }
            }
        }
        return done
    }

    /// The NAME=VALUE lines of the image's /etc/environment, read as enroot reads it.
    static func environmentFile(_ rootfs: RootFilesystem) -> [String] {
        guard let bytes = rootfs.read("/etc/environment", limit: 1 << 20) else { return [] }
        return EnvironFile.parse(String(decoding: bytes, as: UTF8.self)).map { "\($0.0)=\($0.1)" }
    }

    /// Adds the caller to the image's /etc/passwd and /etc/group through the overlay (as enroot's
    /// 10-shadow hook), where prepareUpper could not.
    func addUser(_ rootfs: RootFilesystem, account: Account, skipping done: Set<String>) throws(Diagnostic) {
        try step("add the user to /etc/passwd") {
            for name in ["passwd", "group"] where !done.contains("/etc/" + name) {
                let content = rootfs.read("/etc/" + name).flatMap { String(validating: $0, as: UTF8.self) } ?? ""
                if let text = account.updated(name, content) { try rootfs.write("/etc/" + name, text) }
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
            case .detach:
                do throws(SystemCallError) {
                    try rootfs.detach(mount.destination)
                } catch {
                    // Nothing mounted there, or no such path: nothing to take away.
                    if error.code != EINVAL && error.code != ENOENT { throw error }
                }
            case .squashfs: break
            }
        } catch {
            if mount.type == .detach {
                throw Diagnostic(kind: .system, file: source, key: key, message: "cannot unmount \(mount.destination): \(error)")
            }
            throw Diagnostic(
                kind: .system, file: source, key: key,
                message: "cannot mount \(mount.source) at \(mount.destination): \(error)",
                hint: (error as? SystemCallError).flatMap { Self.hint(for: $0, mount: mount) })
        }
    }

    /// What to do about a mount the kernel refused, where the cause is a known one.
    static func hint(for error: SystemCallError, mount: Mount) -> String? {
        let atime = ["noatime", "atime", "relatime", "norelatime", "strictatime", "nodiratime"]
        switch error.code {
        case EXDEV:
            return "the destination is inside a mount from the host, where nothing is created: create it on the host first"
        case EPERM where mount.type == .bind && mount.options.contains(where: atime.contains):
            return "without privilege a bind mount keeps its source's atime behaviour: remove \(mount.options.filter(atime.contains).joined(separator: ", "))"
        case EINVAL where mount.type == .bind && !mount.options.contains("rbind") && mount.options.contains("bind"):
            return "the source has mounts below it that a non-recursive bind would uncover: use rbind (the default) instead of bind"
        case EINVAL where mount.type == .tmpfs:
            return "check the tmpfs options (size=1G, mode=0755, nr_inodes=, uid=, gid=)"
        default:
            return nil
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

    /// The account from the environment (USER, HOME: no user database lookup, which can be slow
    /// or out of sync on compute nodes), else from the user database. `root` is the image's tree,
    /// where the login shell must exist (else /bin/sh).
    static func current(identity: Identity, root: String) -> Account {
        let environment = ProcessEnvironment.current
        // A value that would break a passwd line (a ':' or a newline) is not taken.
        let fits = { (value: String) in !value.contains(":") && !value.contains("\n") && !value.contains("\r") }
        var name = environment["USER"].flatMap { $0.isEmpty || !fits($0) ? nil : $0 } ?? ""
        var home = environment["HOME"].flatMap { $0.hasPrefix("/") && fits($0) ? $0 : nil } ?? ""
        var gecos = ""
        var shell = environment["SHELL"].flatMap { fits($0) ? $0 : nil } ?? ""
        if name.isEmpty || home.isEmpty, let entry = getpwuid(identity.uid) {
            if name.isEmpty { name = String(cString: entry.pointee.pw_name) }
            if home.isEmpty { home = String(cString: entry.pointee.pw_dir) }
            gecos = String(cString: entry.pointee.pw_gecos)
            if shell.isEmpty { shell = String(cString: entry.pointee.pw_shell) }
        }
        if name.isEmpty { name = "user\(identity.uid)" }
        if home.isEmpty { home = "/" }
        let rootFD = Glibc.open(root, TBX_O_PATH | O_DIRECTORY | O_CLOEXEC)
        if shell.isEmpty || rootFD < 0 || tbx_open_in_root(rootFD, shell, TBX_O_PATH, 0).closing() < 0 {
            shell = "/bin/sh"
        }
        if rootFD >= 0 { System.close(rootFD) }
        var groupName = name
        if identity.gid != identity.uid || identity.privileged, let entry = getgrgid(identity.gid) {
            groupName = String(cString: entry.pointee.gr_name)
        }
        if identity.innerUID == 0 {
            name = "root"
            home = "/root"
        }
        if identity.innerGID == 0 { groupName = "root" }
        return Account(
            name: name, uid: identity.innerUID, gid: identity.innerGID, groupName: groupName,
            gecos: gecos.replacingColons(), home: home, shell: shell)
    }

    /// The image's passwd or group file with the caller's entry: root's (uid or gid 0) is kept as
    /// the image has it; for anyone else, an entry of the image with the caller's id or name is
    /// replaced, so that `id` and `ls -l` name the caller (nil: nothing to change).
    func updated(_ file: String, _ content: String) -> String? {
        let id = file == "passwd" ? "\(uid)" : "\(gid)"
        let entryName = file == "passwd" ? name : groupName
        let entry = file == "passwd" ? "\(name):x:\(uid):\(gid):\(gecos):\(home):\(shell)" : "\(groupName):x:\(gid):"
        let lines = content.split(separator: "\n").filter { !$0.isEmpty }
        func isCallers(_ line: Substring) -> Bool {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            return fields.count > 2 && (fields[2] == id || (id != "0" && fields[0] == entryName))
        }
        let matching = lines.filter(isCallers)
        if id == "0" && !matching.isEmpty { return nil }
        if matching.count == 1 && matching[0] == entry { return nil }
        // Other entries for the caller's id or name are dropped (a group's members with it).
        return (lines.filter { !isCallers($0) } + [Substring(entry)]).joined(separator: "\n") + "\n"
    }
}

extension Int32 {
    /// Closes a descriptor that was only opened to see whether it could be; returns it.
    fileprivate func closing() -> Int32 {
        if self >= 0 { System.close(self) }
        return self
    }
}

/// This process's environment, read once from environ (cheaper at start-up than ProcessInfo).
public enum ProcessEnvironment {
    public static let current: [String: String] = {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }()
}

extension String {
    fileprivate func replacingColons() -> String { String(map { $0 == ":" || $0 == "\n" ? " " : $0 }) }
}
