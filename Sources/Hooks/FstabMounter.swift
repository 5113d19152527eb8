import Glibc
import Runtime
import ToolboxCore
import ToolboxModel

/// Performs fstab entries inside a container's root file system.
public struct FstabMounter {
    public var rootfs: RootFilesystem
    /// Says a `nofail` line that failed (unless it is `silent`), as enroot-mount warns.
    public var warning: (String) -> Void = { StandardStreams.writeError("warning: \($0)\n") }

    public init(rootfs: RootFilesystem, tool: String? = nil) {
        self.rootfs = rootfs
        if let tool { warning = { StandardStreams.writeError("\(tool): warning: \($0)\n") } }
    }

    /// Options enroot-mount takes that change nothing here: fstab's own (auto, user, ...) and
    /// flags without effect on these mounts (sync, mand, lazytime, ...).
    static let withoutEffect: Set<String> = [
        "auto", "noauto", "user", "nouser", "users", "nousers", "owner", "noowner", "group", "nogroup", "defaults", "loud",
        "silent", "sync", "async", "dirsync", "mand", "nomand", "lazytime", "nolazytime", "diratime", "nostrictatime",
        "iversion", "noiversion",
    ]

    /// An fstab line's options sorted out: the toolbox's and enroot's own, and the rest for
    /// the kernel.
    struct Classified {
        var create: RootFilesystem.TargetKind?
        var createAuto = false
        var nofail = false
        var detach = false
        var remount = false
        var verbose = true
        var rest: [String] = []
    }

    static func classify(_ entry: FstabEntry) throws(Diagnostic) -> Classified {
        var result = Classified()
        result.verbose = !entry.options.contains("silent") || entry.options.contains("loud")
        for option in entry.options {
            switch option {
            case "x-create=dir": result.create = .directory
            case "x-create=file": result.create = .file
            case "x-create=auto": result.createAuto = true
            case _ where option.hasPrefix("x-create"):
                throw Diagnostic(kind: .invalid, file: entry.origin, message: "mount option '\(option)': x-create takes dir, file or auto")
            case "x-detach": result.detach = true
            case "nofail": result.nofail = true
            case "remount": result.remount = true
            case "x-move": break
            case _ where withoutEffect.contains(option): break
            // x-* options are for programs in user space (util-linux's rule), never the kernel's.
            case _ where option.hasPrefix("x-"): break
            default: result.rest.append(option)
            }
        }
        return result
    }

    /// What `perform` would refuse before it mounts anything (options, a missing bind source),
    /// for hook-run without --apply: its report then holds only lines that --apply takes. A
    /// nofail line is never an error.
    public static func check(_ entry: FstabEntry) throws(Diagnostic) {
        let classified = try classify(entry)
        do throws(Diagnostic) {
            let isBind = entry.type == "none" || entry.type == "bind" || entry.type == "rbind"
            if case .failure(let unsupported) = MountOptions.parse(classified.rest, allowData: !isBind) {
                throw unsupportedOption(unsupported.option, entry)
            }
            let propagationOnly = entry.source == "none" && isBind && classified.rest.allSatisfy { MountOptions.propagations[$0] != nil }
            if isBind && !classified.detach && !classified.remount && !propagationOnly && access(entry.source, F_OK) != 0 {
                throw missingSource(entry)
            }
        } catch {
            if !classified.nofail { throw error }
        }
    }

    /// Mounts one entry. Returns false when it failed but was marked `nofail` (said as a warning
    /// unless `silent`).
    @discardableResult
    public func perform(_ entry: FstabEntry) throws(Diagnostic) -> Bool {
        let classified = try Self.classify(entry)
        do throws(Diagnostic) {
            return try perform(
                entry, rest: classified.rest, create: classified.create, createAuto: classified.createAuto, detach: classified.detach,
                remount: classified.remount)
        } catch {
            guard classified.nofail else { throw error }
            if classified.verbose { warning("\(entry.origin): \(error.message); skipped (nofail)") }
            return false
        }
    }

    func perform(
        _ entry: FstabEntry, rest: [String], create: RootFilesystem.TargetKind?, createAuto: Bool, detach: Bool, remount: Bool
    ) throws(Diagnostic) -> Bool {
        let target = entry.target.hasPrefix("/") ? entry.target : "/" + entry.target
        let isBind = entry.type == "none" || entry.type == "bind" || entry.type == "rbind"
        var options: MountOptions
        switch MountOptions.parse(rest, allowData: !isBind) {
        case .failure(let unsupported):
            throw Self.unsupportedOption(unsupported.option, entry)
        case .success(let parsed):
            options = parsed
        }
        if isBind && !rest.contains("bind") && !rest.contains("rbind") { options.recursive = true }
        let creates = create != nil || createAuto
        // remount: the mount already at TARGET gets these flags (ro, nosuid, ...; rbind: and
        // those below it); none TARGET none PROPAGATION: only its propagation changes.
        let propagationOnly = entry.source == "none" && isBind && rest.allSatisfy { MountOptions.propagations[$0] != nil }
        if remount || propagationOnly {
            if !propagationOnly { options.recursive = rest.contains("rbind") }
            do throws(SystemCallError) {
                try rootfs.change(target, options: propagationOnly ? MountOptions.propagationOnly(options.propagation) : options, fileSystem: isBind ? nil : options.data)
            } catch {
                throw Diagnostic(
                    kind: .system, file: entry.origin, message: "cannot change the mount at \(target): \(error.reason)",
                    hint: error.code == EINVAL ? "nothing is mounted at \(target) in the container" : Self.hint(for: error, creates: true, detach: false))
            }
            return true
        }
        if detach, rootfs.resolve(target) == rootfs.resolve("/") {
            throw Diagnostic(
                kind: .invalid, file: entry.origin, message: "x-detach of \(entry.target) would take away the container's root",
                hint: "detach a mount below the root")
        }
        // A bind mount's source is on the host: missing, it is the source that needs fixing.
        if isBind && !detach && access(entry.source, F_OK) != 0 { throw Self.missingSource(entry) }
        do throws(SystemCallError) {
            if detach {
                try rootfs.detach(target)
            } else if isBind {
                try rootfs.bind(entry.source, to: target, options: options, create: creates)
            } else {
                try rootfs.mount(entry.source, type: entry.type, at: target, options: options, create: creates)
            }
        } catch {
            throw Diagnostic(
                kind: .system, file: entry.origin,
                message: detach ? "cannot detach \(target): \(error.reason)" : "cannot mount \(entry.source) at \(target): \(error.reason)",
                hint: Self.hint(for: error, creates: create != nil || createAuto, detach: detach))
        }
        return true
    }

    static func unsupportedOption(_ option: String, _ entry: FstabEntry) -> Diagnostic {
        Diagnostic(kind: .invalid, file: entry.origin, message: "mount option '\(option)' is not supported for a bind mount")
    }

    static func missingSource(_ entry: FstabEntry) -> Diagnostic {
        Diagnostic(
            kind: .notFound, file: entry.origin, message: "the mount source \(entry.source) does not exist on the host",
            hint: "create it first, or fix the hook's line (nofail skips a source that may be missing)")
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
