#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FoundationEssentials
import OCI
import ToolboxCore
import ToolboxModel

/// The builders img-build can drive. None is written here: each is an existing program that
/// builds without root.
public enum BuilderKind: String, CaseIterable, Sendable {
    /// Charliecloud's `ch-image` (Debian: charliecloud-builders): unprivileged, no setup.
    case chImage = "ch-image"
    /// Podman, rootless where the site has set up subordinate ids.
    case podman
    /// Buildah, likewise.
    case buildah
}

/// A builder found on this machine, with what it needs to run.
public struct Builder: Sendable {
    public var kind: BuilderKind
    /// The program (absolute path).
    public var program: String
    public var version: String
    /// The environment its runs get.
    public var environment: [String: String]

    public var description: String { "\(kind.rawValue) \(version)" }

    public static let installHint =
        "install Charliecloud's unprivileged builder (Debian: apt-get install charliecloud-builders python3-lark python3-requests), or podman or buildah and choose it with --builder or TOOLBOX_BUILDER"

    /// The builder `choice` names (a kind, or a path to one), else the first of ch-image, podman
    /// and buildah on PATH; `checked()` then makes sure it starts.
    /// `choiceKey` names where `choice` came from in messages (--builder, TOOLBOX_BUILDER).
    public static func find(_ choice: String?, from choiceKey: String = "--builder", environment: [String: String]) throws(Diagnostic) -> Builder {
        var childEnvironment = environment
        if (childEnvironment["USER"] ?? "").isEmpty, let entry = getpwuid(getuid()), let name = entry.pointee.pw_name {
            // ch-image needs USER (its default storage is /var/tmp/$USER.ch).
            childEnvironment["USER"] = String(cString: name)
        }
        // ch-image's build cache is a git repository that commits; a user without a git identity
        // (no ~/.gitconfig, as on a fresh account) would make every build fail there.
        for (variable, value) in [
            ("GIT_AUTHOR_NAME", "img-build"), ("GIT_COMMITTER_NAME", "img-build"),
            ("GIT_AUTHOR_EMAIL", "img-build@localhost"), ("GIT_COMMITTER_EMAIL", "img-build@localhost"),
        ] where (childEnvironment[variable] ?? "").isEmpty {
            childEnvironment[variable] = value
        }
        let kind: BuilderKind
        let program: String
        if let choice, !choice.isEmpty {
            if choice.contains("/") {
                let name = String(choice[choice.index(after: choice.lastIndex(of: "/") ?? choice.startIndex)...])
                guard let named = BuilderKind(rawValue: name) else {
                    throw Diagnostic(
                        kind: .invalid, key: choiceKey, message: "\(choice) is not one of the builders img-build drives",
                        hint: "give ch-image, podman or buildah, or a path to one of them")
                }
                guard access(choice, X_OK) == 0 else {
                    throw Diagnostic(kind: .unavailable, file: choice, message: "the builder is not an executable file", hint: installHint)
                }
                (kind, program) = (named, choice)
            } else {
                guard let named = BuilderKind(rawValue: choice) else {
                    throw Diagnostic(
                        kind: .invalid, key: choiceKey, message: "unknown builder \"\(choice)\"",
                        hint: "choose ch-image, podman or buildah (--builder or TOOLBOX_BUILDER)")
                }
                guard let path = Self.onPath(named.rawValue, environment: environment) else {
                    throw Diagnostic(kind: .unavailable, message: "the builder \(choice) is not installed (not on PATH)", hint: installHint)
                }
                (kind, program) = (named, path)
            }
        } else {
            guard let found = BuilderKind.allCases.lazy.compactMap({ kind in Self.onPath(kind.rawValue, environment: environment).map { (kind, $0) } }).first else {
                throw Diagnostic(kind: .unavailable, message: "no container builder found: none of ch-image, podman or buildah is on PATH", hint: installHint)
            }
            (kind, program) = found
        }
        if kind != .chImage && (childEnvironment["BUILDAH_ISOLATION"] ?? "").isEmpty {
            // RUN in a chroot: the OCI runtime's isolation wants cgroups that HPC nodes rarely
            // delegate (buildah: "cgroups in hybrid mode"); BUILDAH_ISOLATION set wins.
            childEnvironment["BUILDAH_ISOLATION"] = "chroot"
        }
        return Builder(kind: kind, program: program, version: "", environment: childEnvironment)
    }

    /// The builder with its version, after checking that it starts (`--version`): done only when
    /// something is to be built (ch-image is a Python program: a start costs a fifth of a second).
    public func checked() throws(Diagnostic) -> Builder {
        if kind != .chImage && getuid() != 0 {
            // Rootless podman and buildah map the image's users onto the caller's subordinate ids.
            let name = environment["USER"] ?? ""
            let uid = String(getuid())
            let listed = (try? FileReader.readText("/etc/subuid"))?.split(separator: "\n").contains { line in
                let owner = line.split(separator: ":").first.map(String.init)
                return owner == name || owner == uid
            } ?? false
            guard listed else {
                throw Diagnostic(
                    kind: .unavailable, message: "\(kind.rawValue) without root needs subordinate user ids, and /etc/subuid has none for \(name.isEmpty ? uid : name)",
                    hint: "ask for a range in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 \(name.isEmpty ? uid : name)), or build with ch-image (--builder ch-image), which needs none")
            }
        }
        let result = ChildProcess.run([program, "--version"], environment: environment, captureErrors: true)
        let output = String(decoding: result.output + result.errors, as: UTF8.self)
        guard result.status == 0 else {
            let last = output.split(separator: "\n").last.map(String.init) ?? result.failure ?? "no output"
            throw Diagnostic(
                kind: .unavailable, message: "\(program) does not run (\(program) --version: exit status \(result.status): \(last))",
                hint: kind == .chImage ? "ch-image needs Python 3 with lark and requests: apt-get install python3-lark python3-requests" : Self.installHint)
        }
        var checked = self
        checked.version = output.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.first?.isNumber == true }.map(String.init) ?? "unknown"
        return checked
    }

    static func onPath(_ name: String, environment: [String: String]) -> String? {
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where directory.hasPrefix("/") {
            let candidate = directory + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs the builder with its output on stderr (a stage's stdout carries the document).
    func runShowingOutput(_ arguments: [String]) throws(Diagnostic) -> Int32 {
        // SIGTERM or SIGINT to img-build alone reaches the builder and what it runs (it ran on,
        // orphaned); in a group of its own, so that a RUN's processes go with it.
        let result = ChildProcess.runForwardingSignals([program] + arguments, environment: environment, outputToErrors: true, ownGroup: true)
        if let failure = result.failure {
            throw Diagnostic(kind: .unavailable, file: program, message: "cannot run the builder: \(failure)", hint: Self.installHint)
        }
        return result.status
    }

    /// Runs a helper command and returns its stdout; a failure is an error with its stderr.
    func capture(_ arguments: [String], what: String) throws(Diagnostic) -> String {
        let result = ChildProcess.run(arguments, environment: environment, captureErrors: true)
        if let failure = result.failure {
            throw Diagnostic(kind: .unavailable, message: "cannot run \(arguments[0]) to \(what): \(failure)", hint: Self.installHint)
        }
        guard result.status == 0 else {
            let text = String(decoding: result.errors, as: UTF8.self)
            let errors = text.split(separator: "\n").suffix(5).joined(separator: "\n")
            if text.contains("No space left on device") {
                throw Diagnostic(
                    kind: .output, message: "cannot \(what): no space left on device (\(arguments[0]): \(errors))",
                    hint: "free space in the cache, or choose another with --cache or TOOLBOX_CACHE")
            }
            throw Diagnostic(kind: .system, message: "\(arguments.joined(separator: " ")) failed (exit status \(result.status)) while trying to \(what): \(errors)")
        }
        return String(decoding: result.output, as: UTF8.self).trimmingWhitespace()
    }

    // MARK: The base image

    /// The base image as img-build has it.
    public struct Base: Sendable {
        /// Its name in the builder (what BASE_IMAGE holds and a matching FROM is rewritten to).
        public var name: String
        /// The image as one squashfs file (what ch-image imports, unpacked).
        public var squashfs: String?
        /// The pulled image (what podman and buildah import, as an OCI layout of the cached blobs).
        public var pull: PullResult?
        public var config: PullResult.ImageConfigSummary?
        public var architecture: String

        public init(name: String, squashfs: String?, pull: PullResult?, config: PullResult.ImageConfigSummary?, architecture: String) {
            self.name = name
            self.squashfs = squashfs
            self.pull = pull
            self.config = config
            self.architecture = architecture
        }
    }

    /// Whether the base must be given as a squashfs file (else as a pulled image).
    public var takesBaseAsSquashfs: Bool { kind == .chImage }

    /// The name a base with this digest gets in the builder.
    public func baseName(digest: String) -> String {
        let hex = String(digest.split(separator: ":").last ?? Substring(digest)).prefix(16)
        return kind == .chImage ? "toolbox-base:\(hex)" : "localhost/toolbox-base:\(hex)"
    }

    /// Makes the base known to the builder under `base.name`, once: `marker` records that an
    /// import finished (an interrupted one is done again). `workspace` is a private directory.
    public func importBase(_ base: Base, workspace: String, marker: String, say: (String) -> Void) throws(Diagnostic) {
        switch kind {
        case .chImage:
            if FileReader.kind(of: marker) == .regularFile, FileReader.kind(of: try chImagePath(base.name) + "/ch") == .directory {
                say("base \(base.name) already in ch-image's storage")
                return
            }
            guard let squashfs = base.squashfs else { throw Diagnostic(kind: .software, message: "ch-image needs the base as a squashfs file") }
            let tree = workspace + "/base"
            say("unpacking the base image for ch-image (\(squashfs))")
            var unpack = ["unsquashfs", "-no-progress", "-no-xattrs", "-d", tree]
            if geteuid() != 0 {
                // Device nodes cannot be made without privilege (an image made by img-squash from
                // a layer with /dev/null has one): left out, as a runtime mounts /dev anyway.
                let listing = try capture(["unsquashfs", "-lln", "-no-progress", squashfs], what: "list the base image")
                let devices = listing.split(separator: "\n").compactMap { line -> Substring? in
                    guard line.first == "b" || line.first == "c", let range = line.range(of: " squashfs-root/") else { return nil }
                    return line[range.upperBound...]
                }
                if !devices.isEmpty {
                    let list = workspace + "/devices.exclude"
                    try FileWriter.writeFile(list, Array((devices.joined(separator: "\n") + "\n").utf8)) { code in
                        Diagnostic(kind: .output, file: list, message: "cannot write: \(String(cString: strerror(code)))")
                    }
                    unpack += ["-exclude-file", list]
                    say("leaving out \(devices.count) device node\(devices.count == 1 ? "" : "s") of the base image (\(devices.prefix(3).joined(separator: ", "))\(devices.count > 3 ? ", ..." : "")): they need root")
                }
            }
            _ = try capture(unpack + [squashfs], what: "unpack the base image")
            try writeChMetadata(base, into: tree)
            let status = try runShowingOutput(["import", tree, base.name])
            guard status == 0 else {
                throw Diagnostic(kind: .system, message: "ch-image import of the base image failed (exit status \(status))", hint: "see ch-image's message above")
            }
        case .podman, .buildah:
            if FileReader.kind(of: marker) == .regularFile,
                ChildProcess.run([program, "inspect", "--type", "image", base.name], environment: environment, captureErrors: true).status == 0
            {
                say("base \(base.name) already in \(kind.rawValue)'s storage")
                return
            }
            guard let pull = base.pull else {
                throw Diagnostic(
                    kind: .invalid, message: "\(kind.rawValue) takes the base image from a registry or an image file that img-pull imported, not a squashfs file",
                    hint: "build on a squashfs file with ch-image (--builder ch-image), or name the image it came from in the EDF")
            }
            let layout = workspace + "/base-layout"
            try OCILayout.write(pull, to: layout)
            say("importing the base image into \(kind.rawValue)")
            // Run in the workspace with a relative path: they name the image after the path,
            // and a name must be lower case.
            let id = try capture(
                ["/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh", workspace, program, "pull", "-q", "oci:base-layout"],
                what: "import the base image")
            _ = try capture([program, "tag", id.split(separator: "\n").last.map(String.init) ?? id, base.name], what: "name the base image")
            // The name the layout import gave it goes (the image stays under base.name).
            _ = ChildProcess.run([program, "rmi", "localhost/base-layout:latest"], environment: environment, captureErrors: true)
        }
        try FileWriter.writeFile(marker, Array("\(base.name)\n".utf8)) { code in
            Diagnostic(kind: .output, file: marker, message: "cannot write: \(String(cString: strerror(code)))")
        }
    }

    /// ch-image's metadata for an imported tree: the base config's variables, directory,
    /// labels and volumes, which ch-image otherwise only takes from images it pulls itself.
    private func writeChMetadata(_ base: Base, into tree: String) throws(Diagnostic) {
        struct Metadata: Encodable {
            var arch: String
            var arg: [String: String] = [:]
            var cwd: String
            var env: [String: String]
            var history: [String] = []
            var labels: [String: String]
            var shell = ["/bin/sh", "-c"]
            var volumes: [String]
        }
        var env: [String: String] = [:]
        for line in base.config?.Env ?? [] {
            guard let equals = line.firstIndex(of: "=") else { continue }
            env[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        let metadata = Metadata(
            arch: base.architecture, cwd: base.config?.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/", env: env,
            labels: base.config?.Labels ?? [:], volumes: base.config?.Volumes ?? [])
        let directory = tree + "/ch"
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw Diagnostic(kind: .output, file: directory, message: "cannot create: \(String(cString: strerror(errno)))")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(metadata) else { throw Diagnostic(kind: .software, message: "cannot encode ch-image metadata") }
        try FileWriter.writeFile(directory + "/metadata.json", Array(data)) { code in
            Diagnostic(kind: .output, file: directory + "/metadata.json", message: "cannot write: \(String(cString: strerror(code)))")
        }
    }

    /// Where ch-image keeps an image's tree (the rule ch-convert uses: `img/` in the storage
    /// directory, `/` written as `%` and `:` as `+`).
    func chImagePath(_ name: String) throws(Diagnostic) -> String {
        let storage = try capture([program, "gestalt", "storage-path"], what: "find ch-image's storage directory")
        return storage + "/img/" + name.replacingOccurrences(of: "/", with: "%").replacingOccurrences(of: ":", with: "+")
    }

    // MARK: The build

    /// Runs the build; the builder's output goes to stderr. Returns its exit status.
    public func build(
        containerfile: String, context: String, tag: String, buildArgs: [String: String], options: [String] = []
    ) throws(Diagnostic) -> Int32 {
        var arguments = ["build"] + options + ["-t", tag, "-f", containerfile]
        // img-build keys its builds itself. ch-image's own build cache takes every imported base
        // for the same FROM and would hand one base's RUN results to another: not used, unless
        // the builder options ask for it.
        if kind == .chImage && !options.contains(where: { ["--cache", "--no-cache", "--rebuild"].contains($0) }) {
            arguments.insert("--no-cache", at: 1)
        }
        for name in buildArgs.keys.sorted() { arguments += ["--build-arg", "\(name)=\(buildArgs[name] ?? "")"] }
        return try runShowingOutput(arguments + [context])
    }

    /// What a build produced, for img-build to store as an OCI image.
    public enum Product: Sendable {
        /// ch-image: the image's tree and its metadata (variables, directory, labels, volumes).
        case tree(path: String, runtime: ImageConfiguration.Runtime, architecture: String, excluding: [String])
        /// podman, buildah: an OCI image layout directory.
        case layout(path: String)
    }

    /// The built image, ready to be stored.
    public func product(tag: String, workspace: String, base: PullResult.ImageConfigSummary?) throws(Diagnostic) -> Product {
        switch kind {
        case .chImage:
            let tree = try chImagePath(tag)
            let metadataPath = tree + "/ch/metadata.json"
            struct Metadata: Decodable {
                var arch: String?
                var cwd: String?
                var env: [String: String]?
                var labels: [String: String]?
                var volumes: [String]?
            }
            let text = try FileReader.readText(metadataPath)
            let metadata: Metadata
            do {
                metadata = try JSONDecoder().decode(Metadata.self, from: Data(text.utf8))
            } catch {
                throw Diagnostic(kind: .invalid, file: metadataPath, message: "ch-image's metadata does not parse: \(describeDecodingError(error))")
            }
            var runtime = ImageConfiguration.Runtime()
            runtime.Env = (metadata.env ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            runtime.WorkingDir = metadata.cwd
            runtime.Labels = metadata.labels.flatMap { $0.isEmpty ? nil : $0 }
            runtime.Volumes = metadata.volumes.flatMap { $0.isEmpty ? nil : Dictionary(uniqueKeysWithValues: $0.map { ($0, ImageConfiguration.Empty()) }) }
            // ch-image ignores USER, ENTRYPOINT and CMD: the base's stay (img-build applies the
            // Containerfile's ENTRYPOINT and CMD itself).
            runtime.User = base?.User
            runtime.Entrypoint = base?.Entrypoint
            runtime.Cmd = base?.Cmd
            // Its build cache's files, as ch-convert leaves them out.
            return .tree(path: tree, runtime: runtime, architecture: metadata.arch ?? "amd64", excluding: ["./.git", "./.gitignore", "./ch/git.pickle"])
        case .podman, .buildah:
            let layout = workspace + "/layout"
            _ = try capture([program, "push", tag, "oci:" + layout + ":latest"], what: "export the built image")
            return .layout(path: layout)
        }
    }

    /// Removes the built image from the builder's storage (its build cache keeps what it keeps).
    public func remove(tag: String) {
        let arguments = kind == .chImage ? [program, "delete", tag] : [program, "rmi", tag]
        _ = ChildProcess.run(arguments, environment: environment, captureErrors: true)
    }
}
