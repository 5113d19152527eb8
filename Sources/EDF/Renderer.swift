import ToolboxCore
import ToolboxModel

/// Turns a merged definition into the rendered environment document: variables expanded, image
/// reference parsed, mounts parsed and checked against the file system, defaults applied. Every
/// problem is collected, so that one run reports all of them.
public struct Renderer: Sendable {
    public var expander: VariableExpander
    public var currentDirectory: String
    /// Tells what is at a host path; replaceable in tests.
    public var fileKind: @Sendable (String) -> FileReader.Kind = FileReader.kind(of:)
    /// Why a host file cannot be read, or nil; replaceable in tests.
    public var unreadable: @Sendable (String) -> String? = FileReader.unreadable

    public init(variables: [String: String], currentDirectory: String) {
        self.expander = VariableExpander(variables: variables)
        self.currentDirectory = currentDirectory
    }

    /// Mount flags accepted in the third part of a mount entry (besides `sqsh`).
    public static let mountFlags: [String] = [
        "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind",
        "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
        "noatime", "atime", "relatime", "norelatime", "strictatime", "nodiratime",
    ]
    /// Flags with a value (`size=1G`), mostly for tmpfs.
    public static let mountFlagsWithValue: [String] = ["size", "mode", "nr_inodes", "nr_blocks", "uid", "gid", "x-create"]
    public func render(_ edf: EnvironmentDefinition) -> (EnvironmentDocument, [Diagnostic]) {
        var diagnostics: [Diagnostic] = []
        func fail(_ located: SourceLocation, key: String, _ message: String, hint: String? = nil, kind: Diagnostic.Kind = .invalid) {
            diagnostics.append(Diagnostic(kind: kind, file: located.file, line: located.line, key: key, message: message, hint: hint))
        }
        func expand(_ value: String, key: String, at location: SourceLocation) -> String? {
            do {
                return try expander.expand(value)
            } catch {
                // An image reference's password (USER:PASSWORD@...) is not repeated.
                fail(location, key: key, error.message(in: key == "image" ? ImageReference.redacted(value) : value), hint: error.hint)
                return nil
            }
        }

        var document = EnvironmentDocument()

        if let image = edf.image, let text = expand(image.value, key: "image", at: image.location), !text.isEmpty {
            if text.hasPrefix("/") || text.hasPrefix(".") {
                let path = Path.absolute(text, relativeTo: currentDirectory)
                switch fileKind(path) {
                case .regularFile:
                    if let reason = unreadable(path) {
                        fail(image.location, key: "image", "image file \(path) cannot be read: \(reason)", hint: "check its permissions (ls -l): the user who runs the job reads it", kind: .unreadable)
                    } else {
                        document.image = .local(path: path)
                    }
                case .missing:
                    fail(image.location, key: "image", "image file \(path) does not exist", hint: "a value starting with / or . is a local squashfs file; a registry image has no leading / or .", kind: .notFound)
                case .inaccessible(let reason):
                    fail(image.location, key: "image", "image file \(path) cannot be reached: \(reason)", hint: "check the permissions of its directories (ls -ld)", kind: .unreadable)
                default:
                    fail(image.location, key: "image", "image \(path) is not a regular file", hint: "give the path of a squashfs image file")
                }
            } else {
                do {
                    document.image = .registry(try ImageReference.parse(text))
                } catch {
                    fail(image.location, key: "image", error.message, hint: error.hint)
                }
            }
        }

        if let containerfile = edf.containerfile, let text = expand(containerfile.value, key: "containerfile", at: containerfile.location),
            !text.isEmpty
        {
            let path = Path.absolute(text, relativeTo: currentDirectory)
            let kind = fileKind(path)
            if !text.hasPrefix("/") && !text.hasPrefix(".") {
                fail(
                    containerfile.location, key: "containerfile", "\"\(text)\" is not an absolute path",
                    hint: "write ./\(text) for a file relative to the current directory, or its absolute path")
            } else if kind == .regularFile, let reason = unreadable(path) {
                fail(containerfile.location, key: "containerfile", "Containerfile \(path) cannot be read: \(reason)", hint: "check its permissions (ls -l)", kind: .unreadable)
            } else if kind == .regularFile {
                document.containerfile = path
            } else if case .inaccessible(let reason) = kind {
                fail(containerfile.location, key: "containerfile", "Containerfile \(path) cannot be reached: \(reason)", hint: "check the permissions of its directories (ls -ld)", kind: .unreadable)
            } else if kind == .missing {
                fail(
                    containerfile.location, key: "containerfile", "Containerfile \(path) does not exist",
                    hint: "create it, or fix the path (relative paths are taken from \(currentDirectory))", kind: .notFound)
            } else {
                fail(containerfile.location, key: "containerfile", "\(path) is not a regular file", hint: "give the path of a Containerfile (Dockerfile)")
            }
        }

        if let workdir = edf.workdir, let text = expand(workdir.value, key: "workdir", at: workdir.location) {
            if text.hasPrefix("/") {
                document.workdir = Path.normalize(text)
            } else if !text.isEmpty {
                fail(workdir.location, key: "workdir", "\"\(text)\" is not an absolute path", hint: "workdir is a directory inside the container, e.g. workdir = \"/workspace\"")
            }
        }
        document.entrypoint = edf.entrypoint?.value ?? false
        document.writable = edf.writable?.value ?? true

        var seenMounts: Set<Mount> = []
        for (index, entry) in (edf.mounts ?? []).enumerated() {
            // Numbered as in the file that gives it (the line is that file's too).
            let key = "mounts[\(entry.location.element ?? index)]"
            switch parseMount(entry.value, key: key, at: entry.location) {
            case .success(let mount):
                if seenMounts.insert(mount).inserted { document.mounts.append(mount) }
            case .failure(let list):
                diagnostics += list.diagnostics
            }
        }

        if let devices = edf.devices {
            var result: [String] = []
            for (index, device) in devices.enumerated() {
                let key = "devices[\(device.location.element ?? index)]"
                guard let text = expand(device.value, key: key, at: device.location) else { continue }
                if text.isEmpty {
                    fail(device.location, key: key, "empty device")
                } else if !result.contains(text) {
                    result.append(text)
                }
            }
            document.devices = result
        }

        for (name, value) in edf.env ?? [:] {
            if let text = expand(value.value, key: "env.\(name)", at: value.location) { document.env[name] = text }
        }
        for (name, value) in edf.annotations ?? [:] {
            if let text = expand(value.value, key: "annotations.\(name)", at: value.location) { document.annotations[name] = text }
        }
        diagnostics.sort(by: Self.inSourceOrder)
        return (document, diagnostics)
    }

    /// Orders diagnostics by file, then line, then key.
    static func inSourceOrder(_ a: Diagnostic, _ b: Diagnostic) -> Bool {
        let fileA: String = a.file ?? ""
        let fileB: String = b.file ?? ""
        if fileA != fileB { return fileA < fileB }
        let lineA: Int = a.line ?? 0
        let lineB: Int = b.line ?? 0
        if lineA != lineB { return lineA < lineB }
        return keyOrder(a.key ?? "") < keyOrder(b.key ?? "")
    }

    /// `mounts[10]` after `mounts[2]`: the key split at its first index, which compares as a number.
    static func keyOrder(_ key: String) -> (String, Int, String) {
        guard let open = key.firstIndex(of: "["), let close = key[open...].firstIndex(of: "]"),
            let number = Int(key[key.index(after: open)..<close])
        else { return (key, -1, "") }
        return (String(key[..<open]), number, String(key[key.index(after: close)...]))
    }

    /// Parses `SOURCE[:DESTINATION[:FLAGS]]` after expanding each part.
    public func parseMount(_ entry: String, key: String, at location: SourceLocation) -> Result<Mount, DiagnosticList> {
        var problems: [Diagnostic] = []
        func fail(_ message: String, hint: String? = nil, kind: Diagnostic.Kind = .invalid) -> Result<Mount, DiagnosticList> {
            problems.append(Diagnostic(kind: kind, file: location.file, line: location.line, key: key, message: message, hint: hint))
            return .failure(DiagnosticList(problems))
        }
        let form = "SOURCE:DESTINATION[:FLAGS], e.g. \"${SCRATCH}:/scratch:ro\""
        let rawParts = VariableExpander.split(entry, on: ":")
        guard rawParts.count <= 3 else {
            return fail("too many ':' in \"\(entry)\" (paths cannot contain ':')", hint: "write \(form)")
        }
        if let empty = rawParts.firstIndex(where: \.isEmpty) {
            let part = ["source", "destination", "flags"][empty]
            return fail("empty \(part) in \"\(entry)\"", hint: "write \(form)")
        }
        var parts: [String] = []
        for raw in rawParts {
            do {
                parts.append(try expander.expand(raw))
            } catch {
                return fail(error.message(in: entry), hint: error.hint)
            }
        }
        if let empty = parts.firstIndex(where: \.isEmpty) {
            let part = ["source", "destination", "flags"][empty]
            return fail("\(part) of \"\(entry)\" is empty after expanding variables", hint: "check the variables it uses")
        }

        // Flags.
        var options: [String] = []
        var type = Mount.Kind.bind
        if parts.count == 3 {
            let flags = parts[2].split(separator: "+", omittingEmptySubsequences: false).flatMap {
                $0.split(separator: ",", omittingEmptySubsequences: false)
            }.map(String.init)
            if flags.contains("") {
                return fail("an empty mount flag in \"\(entry)\"", hint: "join flags with one + or , (ro+nosuid)")
            }
            for flag in flags {
                if flag == "sqsh" {
                    type = .squashfs
                    continue
                }
                let name = flag.split(separator: "=", maxSplits: 1).first.map(String.init) ?? flag
                let known = flag.contains("=") ? Self.mountFlagsWithValue.contains(name) : Self.mountFlags.contains(flag)
                guard known else {
                    return fail(
                        "unknown mount flag '\(flag)' in \"\(entry)\"",
                        hint: "flags are joined with + or ,; known: sqsh, \(Self.mountFlags.joined(separator: ", ")), \(Self.mountFlagsWithValue.map { $0 + "=..." }.joined(separator: ", "))")
                }
                if let problem = Mount.badValue(flag) {
                    return fail("mount flag '\(flag)' in \"\(entry)\": \(problem)", hint: "e.g. size=1G, mode=0755, uid=1000, x-create=dir")
                }
                if !options.contains(flag) { options.append(flag) }
            }
            for (one, other) in Mount.opposites where options.contains(one) && options.contains(other) {
                return fail("mount flags '\(one)' and '\(other)' in \"\(entry)\" contradict each other", hint: "keep one of them")
            }
            if let problem = Mount.conflict(options) {
                return fail("mount flags in \"\(entry)\": \(problem)", hint: "keep one of them")
            }
        }

        // Source.
        var source = parts[0]
        if source == "tmpfs" {
            guard type == .bind else { return fail("a tmpfs mount cannot have the flag sqsh", hint: "remove sqsh, or give a squashfs file as the source") }
            type = .tmpfs
            if let flag = options.first(where: { ["bind", "rbind"].contains($0) }) {
                return fail("a tmpfs mount cannot have the flag \(flag)", hint: "remove \(flag): tmpfs is a new file system, not a bind mount")
            }
        } else if source == "umount" {
            guard parts.count == 2 else {
                return fail(
                    "\"\(entry)\": umount takes a destination and no flags", hint: "write \"umount:/path\" to unmount /path in the container")
            }
            type = .detach
        } else if source.hasPrefix("/") || source.hasPrefix(".") {
            source = Path.absolute(source, relativeTo: currentDirectory)
            let kind = fileKind(source)
            if kind == .missing {
                return fail("source \(source) does not exist", hint: "create it first, or fix the path (relative sources are taken from \(currentDirectory))", kind: .notFound)
            }
            if case .inaccessible(let reason) = kind {
                return fail("source \(source) cannot be reached: \(reason)", hint: "check the permissions of its directories (ls -ld)", kind: .unreadable)
            }
            if type == .squashfs && kind != .regularFile {
                return fail("sqsh source \(source) is not a regular file", hint: "the sqsh flag mounts a squashfs image file")
            }
            if type == .squashfs, let reason = unreadable(source) {
                return fail("sqsh source \(source) cannot be read: \(reason)", hint: "check its permissions (ls -l)", kind: .unreadable)
            }
            if type == .squashfs && options.contains("rw") {
                return fail("a squashfs mount is read-only; the flag rw is not possible", hint: "remove rw")
            }
            // size, mode, nr_inodes, nr_blocks, uid and gid are tmpfs's (x-create is the toolbox's).
            if let flag = options.first(where: { ["size", "mode", "nr_inodes", "nr_blocks", "uid", "gid"].contains($0.split(separator: "=").first ?? "") }) {
                return fail("the flag \(flag) is for tmpfs mounts, not for a mount of \(source)", hint: "remove it, or mount tmpfs:DESTINATION:\(flag)")
            }
        } else {
            return fail(
                "source \"\(source)\" is not an absolute path",
                hint: "start the source with / or ./ (relative to the current directory), or write tmpfs or umount")
        }

        // Destination: from the container's root (as Pyxis takes one that starts with '.'). A
        // single path is both, as written: "./data" is /data inside, not the host's absolute path.
        let destination = parts.count >= 2 ? parts[1] : parts[0]
        guard destination.hasPrefix("/") || destination.hasPrefix(".") else {
            return fail("destination \"\(destination)\" is not an absolute path", hint: "write the path inside the container from /, e.g. /data")
        }
        let inside = Path.normalize("/" + destination)
        guard inside != "/" else {
            return fail("\"\(entry)\" would mount over the container's root", hint: "the image is the root: mount below it, e.g. /data")
        }
        return .success(Mount(source: source, destination: inside, type: type, options: options))
    }
}
