import Glibc
import Runtime
import ToolboxCore
import ToolboxModel

/// Performs fstab entries inside a container's root file system.
public struct FstabMounter {
    public var rootfs: RootFilesystem

    public init(rootfs: RootFilesystem) {
        self.rootfs = rootfs
    }

    /// Mounts one entry. Returns false when it failed but was marked `nofail`.
    @discardableResult
    public func perform(_ entry: FstabEntry) throws(Diagnostic) -> Bool {
        var create: RootFilesystem.TargetKind?
        var createAuto = false
        var nofail = false
        var detach = false
        var rest: [String] = []
        for option in entry.options {
            switch option {
            case "x-create=dir": create = .directory
            case "x-create=file": create = .file
            case "x-create=auto": createAuto = true
            case "x-detach": detach = true
            case "nofail": nofail = true
            case "silent", "x-move": break
            default:
                if option.hasPrefix("x-") {
                    throw Diagnostic(kind: .invalid, file: entry.origin, message: "fstab option '\(option)' is not supported")
                }
                rest.append(option)
            }
        }
        let target = entry.target.hasPrefix("/") ? entry.target : "/" + entry.target
        let isBind = entry.type == "none" || entry.type == "bind" || entry.type == "rbind"
        var options: MountOptions
        switch MountOptions.parse(rest, allowData: !isBind) {
        case .failure(let unsupported):
            throw Diagnostic(kind: .invalid, file: entry.origin, message: "mount option '\(unsupported.option)' is not supported for a bind mount")
        case .success(let parsed):
            options = parsed
        }
        if isBind && !rest.contains("bind") && !rest.contains("rbind") { options.recursive = true }
        let creates = create != nil || createAuto
        if detach, rootfs.resolve(target) == rootfs.resolve("/") {
            throw Diagnostic(
                kind: .invalid, file: entry.origin, message: "x-detach of \(entry.target) would take away the container's root",
                hint: "detach a mount below the root")
        }
        // A bind mount's source is on the host: missing, it is the source that needs fixing.
        if isBind && !detach && access(entry.source, F_OK) != 0 {
            if nofail { return false }
            throw Diagnostic(
                kind: .notFound, file: entry.origin, message: "the mount source \(entry.source) does not exist on the host",
                hint: "create it first, or fix the hook's line (nofail skips a source that may be missing)")
        }
        do throws(SystemCallError) {
            if detach {
                try rootfs.detach(target)
            } else if isBind {
                try rootfs.bind(entry.source, to: target, options: options, create: creates)
            } else {
                try rootfs.mount(entry.source, type: entry.type, at: target, options: options, create: creates)
            }
        } catch {
            if nofail { return false }
            throw Diagnostic(
                kind: .system, file: entry.origin,
                message: detach ? "cannot detach \(target): \(error.reason)" : "cannot mount \(entry.source) at \(target): \(error.reason)",
                hint: Self.hint(for: error, creates: create != nil || createAuto, detach: detach))
        }
        return true
    }

    static func hint(for error: SystemCallError, creates: Bool, detach: Bool) -> String {
        switch error.code {
        case ENOENT where detach: return "nothing is mounted there in the container"
        case ENOENT where !creates: return "add x-create=dir or x-create=file to create the mount point"
        case EXDEV: return "the mount point would be created inside a mount from the host: create it on the host first"
        case EPERM, EACCES: return "the container's user may not mount there (the kernel refused it)"
        default: return "check the hook's fstab line (ENROOT_MOUNTS)"
        }
    }
}
