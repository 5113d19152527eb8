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
                message: "cannot mount \(entry.source) at \(target): \(error.reason)",
                hint: error.code == ENOENT && create == nil && !createAuto ? "add x-create=dir or x-create=file to create the mount point" : nil)
        }
        return true
    }
}
