import ArgumentParser
import Build
import Foundation
import OCI
import Registry
import SquashFS
import SystemLibraries
import ToolSupport
import ToolboxCore
import ToolboxModel

/// `img-build`: builds the EDF's Containerfile with an existing unprivileged builder, on the
/// EDF's image, and stores the result in the cache as an image that img-squash reads like a
/// pulled one.
public struct ImageBuild: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "img-build",
        abstract: "Build the EDF's Containerfile with an unprivileged builder (ch-image, podman, buildah) on the EDF's image.",
        discussion: """
            Input: on stdin the environment document of img-pull (edf-expand X | img-pull | \
            img-build | img-squash); a document without "containerfile" passes through \
            unchanged. Or a CONTAINERFILE argument alone: built with no base but its FROM, \
            the result printed as img-pull prints an image.

            The build context is the Containerfile's directory. The base is the EDF's image \
            (pulled by img-pull into the cache, or a squashfs file): it is handed to the builder \
            under a local name, given as the build argument BASE_IMAGE (to a Containerfile \
            that declares ARG BASE_IMAGE), and a FROM line that names the EDF's image (in either form, e.g. FROM nvcr.io#nvidia/pytorch:24.01-py3) \
            is rewritten to that name. So write either FROM <the EDF's image>, or \
            ARG BASE_IMAGE and FROM $BASE_IMAGE. The builder never pulls the base itself.

            Builder: --builder, else $TOOLBOX_BUILDER, else the first of ch-image, podman, \
            buildah on PATH. ch-image (Debian: charliecloud-builders) needs no root and no \
            set-up; its storage is $CH_IMAGE_STORAGE, else /var/tmp/$USER.ch; its own build \
            cache is not used (--no-cache) unless a builder option asks for it. podman and \
            buildah without root need subordinate ids in /etc/subuid; their RUNs run in a chroot \
            (BUILDAH_ISOLATION=chroot unless set). The builder's output goes to stderr. The built image goes into the cache as an OCI image (one uncompressed \
            tar layer for ch-image; the builder's layers for podman and buildah), and replaces \
            "pull" in the document (the pulled base moves to "build"); img-squash then squashes \
            it into the image store as toolbox-build+<dir>+<file>+<key>.<arch>.sqsh (<dir> and \
            <file> in lower case).

            Options for the builder's build command: --builder-arg (repeatable), else \
            $TOOLBOX_BUILDER_ARGS (split on spaces): e.g. --force for ch-image, whose fakeroot \
            workarounds let apt-get and dnf run without root.

            Cache: the key is the SHA-256 of the Containerfile, every file of the context, the \
            base image's digest, the build arguments, the builder and its options, and the \
            architecture. A key \
            built before is not built again (--force does); builds/<key>.json in the cache \
            records it. ch-image ignores USER, LABEL, ENTRYPOINT and CMD; img-build applies the \
            Containerfile's LABELs, ENTRYPOINT and CMD to the image config itself.

            Exit status: the builder's own when the build fails (its message is above), or:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .unavailable, .osError, .ioError], meanings: [
                .invalidInput: "invalid input: a document that is not one, an image not pulled yet, an unknown --builder",
                .noInput: "the Containerfile or a file of its context cannot be read",
                .unavailable: "no container builder (ch-image, podman, buildah), or one that does not start",
                .osError: "a helper step of the build failed (importing the base, exporting the result)",
                .ioError: "the cache could not be written (disk full, permissions)",
            ]))
            """,
        version: toolboxVersion
    )

    @Argument(help: "A Containerfile to build alone (no base but its FROM); without it (or -), the document is read from stdin.", completion: .file())
    var containerfile: String?

    @Option(help: "The builder: ch-image, podman, buildah, or a path to one (default: $TOOLBOX_BUILDER, else the first on PATH).")
    var builder: String?

    @Option(name: .customLong("build-arg"), help: "A build argument NAME=VALUE for the builder (repeatable; part of the cache key).")
    var buildArgs: [String] = []

    @Option(
        name: .customLong("builder-arg"), parsing: .unconditionalSingleValue,
        help: "An option for the builder's build command, such as --force for ch-image (repeatable; default: $TOOLBOX_BUILDER_ARGS, split on spaces; part of the cache key).")
    var builderArgs: [String] = []

    @Option(help: "The cache directory.", completion: .directory)
    var cache: String?

    @Flag(help: "Build even if an image was built before for the same key.")
    var force = false

    @Flag(name: .shortAndLong, help: "No progress messages (the builder's output still goes to stderr).")
    var quiet = false

    public init() {}

    public func validate() throws {
        for argument in buildArgs where !argument.contains("=") || argument.hasPrefix("=") {
            throw ValidationError("--build-arg \"\(argument)\" is not NAME=VALUE")
        }
        if cache == "" { throw ValidationError("--cache needs a directory, not an empty value") }
    }

    public func run() throws {
        let tool = Self.configuration.commandName ?? "img-build"
        let context = ProcessContext.current()
        let env = context.environment
        let say: (String) -> Void = { line in if !quiet { StandardStreams.writeError("\(tool): \(line)\n") } }

        var document: EnvironmentDocument?
        let containerfilePath: String
        // "-": the document on stdin, as img-pull and img-squash take it.
        if let containerfile, containerfile != "-" {
            containerfilePath = Path.absolute(containerfile, relativeTo: context.currentDirectory)
        } else {
            let text = try FileReader.readDocument(from: "img-pull")
            let decoded = try EnvironmentDocument.read(text, source: "<stdin>", previous: "img-pull (edf-expand X | img-pull | img-build)")
            guard let path = decoded.containerfile, decoded.build == nil else {
                say(decoded.build == nil ? "the environment has no containerfile; passed through" : "the environment's containerfile is built already; passed through")
                try StandardStreams.writeOutput(try Output.json(decoded))
                return
            }
            if case .registry = decoded.image, decoded.pull == nil {
                throw Diagnostic(
                    kind: .invalid, file: "<stdin>", message: "the environment's image has not been pulled",
                    hint: "pipe the document through img-pull first: edf-expand X | img-pull | img-build")
            }
            document = decoded
            containerfilePath = path
        }
        guard FileReader.kind(of: containerfilePath) == .regularFile else {
            throw Diagnostic(kind: .notFound, file: containerfilePath, message: "the Containerfile does not exist or is not a file", hint: containerfile == nil ? "check the EDF's containerfile" : "check the path")
        }
        let contextDirectory = String(containerfilePath[..<(containerfilePath.lastIndex(of: "/") ?? containerfilePath.startIndex)])
        guard !contextDirectory.isEmpty else {
            throw Diagnostic(
                kind: .invalid, file: containerfilePath, message: "the build context would be / (the Containerfile's directory)",
                hint: "move the Containerfile into a directory of its own, with the files it COPYs")
        }
        let containerfileText = try FileReader.readText(containerfilePath)

        guard let root = cache ?? ContentStore.defaultRoot(environment: env) else {
            throw Diagnostic(kind: .invalid, message: "no cache directory: HOME is not set", hint: "give --cache DIR or set TOOLBOX_CACHE")
        }
        let store = try ContentStore(root: Path.absolute(root, relativeTo: context.currentDirectory))
        let builder = try Builder.find(builder ?? env["TOOLBOX_BUILDER"], from: builder == nil ? "TOOLBOX_BUILDER" : "--builder", environment: env)

        var arguments: [String: String] = [:]
        for argument in buildArgs {
            guard let equals = argument.firstIndex(of: "=") else { continue }
            arguments[String(argument[..<equals])] = String(argument[argument.index(after: equals)...])
        }

        // The base: the EDF's image, as pulled or as a squashfs file.
        let base = try BaseImage.of(document, builder: builder)
        var containerfileForBuilder = containerfileText
        var baseUsed = base != nil
        if let base {
            let parsed = Containerfile(text: containerfileText)
            // Given only to a Containerfile that declares it: builders reject unused arguments.
            if parsed.declares(argument: "BASE_IMAGE") {
                if let given = arguments["BASE_IMAGE"], given != base.name {
                    StandardStreams.writeError(Diagnostic.warning(
                        key: "--build-arg", "BASE_IMAGE=\(given) is left aside: the base is the EDF's image (\(base.reference))",
                        hint: "change the EDF's image to build on another base").rendered(tool: tool))
                }
                arguments["BASE_IMAGE"] = base.name
            }
            if let rewritten = parsed.replacingFrom(where: base.matches, with: base.name) {
                containerfileForBuilder = rewritten
            } else if !parsed.fromUses(argument: "BASE_IMAGE") {
                baseUsed = false
                StandardStreams.writeError(Diagnostic.warning(
                    file: containerfilePath, key: "FROM", "no FROM names the EDF's image (\(base.reference)) or $BASE_IMAGE: the EDF's image is not used",
                    hint: "write FROM \(base.reference), or ARG BASE_IMAGE and FROM $BASE_IMAGE").rendered(tool: tool))
            }
        }
        let architecture = base?.architecture ?? Puller.hostPlatform().architecture
        let options = builderArgs.isEmpty ? (env["TOOLBOX_BUILDER_ARGS"] ?? "").split(separator: " ").map(String.init) : builderArgs
        var keyParts = BuildKey(
            containerfile: Array(containerfileForBuilder.utf8), context: contextDirectory, base: base?.digest, buildArgs: arguments,
            builder: ([builder.kind.rawValue] + options).joined(separator: " "), architecture: architecture)
        keyParts.excluded = [store.root]
        if let location = try? ImageStore.location(environment: env, cache: document?.pull?.cache ?? store.root), !location.temporary {
            keyParts.excluded.insert(location.directory)
        }
        let key = try keyParts.digest()

        let builds = store.root + "/builds"
        try ImageStore.makeDirectories(builds + "/bases")
        guard let lock = try FileLock(path: builds + "/\(builder.kind.rawValue).lock", wait: true) else {
            throw Diagnostic(kind: .software, message: "the build lock was not taken")
        }
        defer { lock.release() }
        // Held by the builder too: killed, this process would otherwise free the lock while
        // ch-image or buildah still runs, and the next build would clear its workspace.
        lock.shareWithChildren()
        let recordPath = builds + "/\(key.hex).json"
        let naming = BuiltImageNaming(containerfile: containerfilePath, key: key)
        var built: BuiltImage
        if !force, let (recorded, layersPresent) = Self.reusable(recordPath, store: store, naming: naming, environment: env) {
            built = recorded
            built.build.reused = true
            // The same key from another directory (a copy of the project): this run's files and
            // name, so that the document says what it was made from and each project's image
            // goes to its own file in the store; with the layers gone, the squashfs that exists.
            built.build.containerfile = containerfilePath
            built.build.context = contextDirectory
            if layersPresent { built.pull = naming.renaming(recorded.pull) }
            say("using the image built before from \(containerfilePath) (same Containerfile, context and base: key \(key))")
        } else {
            let workspace = store.root + "/tmp/build-\(getpid())"
            Workspace.removeStale(in: store.root + "/tmp", say: say)
            FileWriter.removeTree(workspace)
            try ImageStore.makeDirectories(workspace)
            defer { FileWriter.removeTree(workspace) }
            built = try Self.build(
                BuildPlan(
                    containerfile: containerfilePath, text: containerfileText, textForBuilder: containerfileForBuilder,
                    context: contextDirectory, arguments: arguments, options: options, key: key, naming: naming,
                    architecture: architecture),
                // A base no FROM uses is not handed to the builder (no squashing, no import).
                base: baseUsed ? base : nil, builder: builder, store: store, workspace: workspace, environment: env, say: say)
            let text = try Output.json(built)
            try FileWriter.writeFile(recordPath + ".tmp", Array(text.utf8)) { code in
                Diagnostic(kind: .output, file: recordPath, message: "cannot write the build record: \(String(cString: strerror(code)))")
            }
            guard rename(recordPath + ".tmp", recordPath) == 0 else {
                throw Diagnostic(kind: .output, file: recordPath, message: "cannot write the build record: \(String(cString: strerror(errno)))")
            }
        }

        if var document {
            document.pull = built.pull
            document.build = built.build
            try StandardStreams.writeOutput(try Output.json(document))
        } else {
            try StandardStreams.writeOutput(try Output.json(built))
        }
    }

    /// What one build needs besides the builder and the base.
    struct BuildPlan {
        var containerfile: String
        var text: String
        var textForBuilder: String
        var context: String
        var arguments: [String: String]
        /// Options for the builder's build command.
        var options: [String]
        var key: Digest
        var naming: BuiltImageNaming
        var architecture: String
    }

    /// The image recorded for a key, when it can still be squashed or already was.
    /// The build recorded for this key, and whether its layers are still in the cache (else the
    /// squashfs made from them is in the image store).
    static func reusable(
        _ recordPath: String, store: ContentStore, naming: BuiltImageNaming, environment: [String: String]
    ) -> (BuiltImage, layersPresent: Bool)? {
        guard FileReader.kind(of: recordPath) == .regularFile, let text = try? FileReader.readText(recordPath),
            let recorded = try? JSONDecoder().decode(BuiltImage.self, from: Data(text.utf8))
        else { return nil }
        let blobs = [recorded.pull.config.path] + recorded.pull.layers.map(\.path)
        if blobs.allSatisfy({ FileReader.kind(of: $0) == .regularFile }) { return (recorded, true) }
        // The layers are gone (a cleaned cache), but the squashfs built from them is there.
        if let location = try? ImageStore.location(environment: environment, cache: recorded.pull.cache), !location.temporary {
            let pull = recorded.pull
            let target = location.directory + "/" + pull.imageStoreFileName
            if let metadata = try? FileReader.readText(target + ".json"),
                let squash = try? JSONDecoder().decode(SquashResult.self, from: Data(metadata.utf8)),
                squash.manifestDigest == pull.manifestDigest, FileReader.kind(of: target) == .regularFile
            {
                return (recorded, false)
            }
        }
        return nil
    }

    static func build(
        _ plan: BuildPlan, base: BaseImage?, builder: Builder, store: ContentStore, workspace: String, environment: [String: String],
        say: @escaping (String) -> Void
    ) throws -> BuiltImage {
        let builder = try builder.checked()
        if let base {
            var squashfs: String?
            if builder.takesBaseAsSquashfs {
                squashfs = try base.squashfs(workspace: workspace, environment: environment, say: say)
            }
            try builder.importBase(
                Builder.Base(name: base.name, squashfs: squashfs, pull: base.pull, config: base.config, architecture: base.architecture),
                workspace: workspace, marker: store.root + "/builds/bases/\(builder.kind.rawValue)-\(base.digestHex)", say: say)
        }
        var file = plan.containerfile
        if plan.textForBuilder != plan.text {
            file = workspace + "/Containerfile"
            try FileWriter.writeFile(file, Array(plan.textForBuilder.utf8)) { code in
                Diagnostic(kind: .output, file: file, message: "cannot write: \(String(cString: strerror(code)))")
            }
        }
        let tag = (builder.kind == .chImage ? "" : "localhost/") + "toolbox-build:" + plan.key.hex.prefix(16)
        say("building \(plan.containerfile) with \(builder.description)\(base.map { " on \($0.reference)" } ?? "")")
        let started = Date()
        let status = try builder.build(containerfile: file, context: plan.context, tag: tag, buildArgs: plan.arguments, options: plan.options)
        guard status == 0 else {
            // What the builder made of the failed build goes too (a half-built tree).
            builder.remove(tag: tag)
            StandardStreams.writeError(
                status > 128
                    ? Diagnostic(
                        kind: .invalid, file: plan.containerfile,
                        message: "the build was stopped: \(builder.kind.rawValue) was killed by signal \(status - 128) (\(String(cString: strsignal(status - 128))))",
                        hint: "build again when it should run to its end")
                        .rendered(tool: "img-build")
                    : Diagnostic(kind: .invalid, file: plan.containerfile, message: "the build failed (\(builder.kind.rawValue) exit status \(status))", hint: "the builder's message is above")
                        .rendered(tool: "img-build"))
            // The builder's status is the stage's; exit skips the callers' clean-up, so do it here.
            FileWriter.removeTree(workspace)
            Glibc.exit(status)
        }
        defer { builder.remove(tag: tag) }
        let pull: PullResult
        switch try builder.product(tag: tag, workspace: workspace, base: base?.config) {
        case .tree(let tree, var runtime, let architecture, let excluding):
            let containerfile = Containerfile(text: plan.text)
            // A final stage FROM scratch has nothing of the base's (its command, user, labels).
            let inherited = containerfile.finalStageIsScratch ? nil : base?.config
            if inherited == nil {
                runtime.Entrypoint = nil
                runtime.Cmd = nil
                runtime.User = nil
            }
            let command = containerfile.command(inheriting: (runtime.Entrypoint, runtime.Cmd), shell: ["/bin/sh", "-c"])
            runtime.Entrypoint = command.entrypoint
            runtime.Cmd = command.cmd
            // ch-image ignores LABEL too: the base's labels and the final stage's, their
            // variables replaced as Docker does.
            let labels = containerfile.labels(inheriting: inherited?.Labels ?? [:], environment: inherited?.Env ?? [], arguments: plan.arguments)
            runtime.Labels = labels.isEmpty ? nil : labels
            let stored = try ImageAssembler.store(
                tree: tree, excluding: excluding, runtime: runtime, architecture: architecture, in: store, environment: environment)
            pull = plan.naming.pullResult(stored: stored, store: store)
        case .layout(let layout):
            let puller = Puller(store: store, credentials: CredentialStore(environment: environment), options: .init(platform: Puller.platform(architecture: plan.architecture) ?? Puller.hostPlatform()))
            pull = plan.naming.renaming(try puller.pull(layout: layout, tag: nil))
        }
        say("built \(plan.containerfile) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(pull.reference) (\(pull.manifestDigest))")
        return BuiltImage(
            pull: pull,
            build: BuildResult(
                containerfile: plan.containerfile, context: plan.context, builder: builder.description, key: plan.key.description,
                base: base.map { .init(reference: $0.reference, digest: $0.digest, builderName: $0.name) }, buildArgs: plan.arguments,
                reused: false))
    }
}

/// How a built image is named: registry `toolbox-build`, repository `<context dir>/<file>`
/// (lower case), tag the key's first 16 hex digits.
struct BuiltImageNaming {
    var repository: String
    var tag: String

    init(containerfile: String, key: Digest) {
        let parts = containerfile.split(separator: "/").suffix(2).map { part in
            String(part.lowercased().map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "-" })
        }
        repository = parts.joined(separator: "/")
        tag = String(key.hex.prefix(16))
    }

    static let registry = "toolbox-build"
    var reference: String { "\(Self.registry)/\(repository):\(tag)" }

    func pullResult(stored: ImageAssembler.Stored, store: ContentStore) -> PullResult {
        let runtime = stored.configuration.config ?? ImageConfiguration.Runtime()
        return PullResult(
            reference: reference, registry: Self.registry, repository: repository, tag: tag, manifestDigest: stored.manifest.description,
            indexDigest: nil, mediaType: MediaType.ociManifest,
            platform: .init(os: "linux", architecture: stored.configuration.architecture ?? "amd64", variant: nil), cache: store.root,
            config: .init(
                digest: stored.config.description, path: store.path(of: stored.config), Env: runtime.Env ?? [], Entrypoint: runtime.Entrypoint,
                Cmd: runtime.Cmd, WorkingDir: runtime.WorkingDir, User: runtime.User, Volumes: (runtime.Volumes ?? [:]).keys.sorted(),
                Labels: runtime.Labels ?? [:]),
            layers: [.init(digest: stored.layer.digest.description, mediaType: stored.layer.mediaType, size: stored.layer.size, path: store.path(of: stored.layer.digest))])
    }

    func renaming(_ pull: PullResult) -> PullResult {
        var result = pull
        result.reference = reference
        result.registry = Self.registry
        result.repository = repository
        result.tag = tag
        return result
    }
}

/// The EDF's image as the base of a build.
struct BaseImage {
    var reference: String
    var digest: String
    var name: String
    var architecture: String
    var pull: PullResult?
    var localFile: String?
    var config: PullResult.ImageConfigSummary?
    var imageReference: ImageReference?

    var digestHex: String { String(digest.split(separator: ":").last ?? Substring(digest)).prefix(16).description }

    static func of(_ document: EnvironmentDocument?, builder: Builder) throws(Diagnostic) -> BaseImage? {
        guard let document else { return nil }
        switch document.image {
        case .registry(let reference)?:
            guard let pull = document.pull else { return nil }
            return BaseImage(
                reference: pull.reference, digest: pull.manifestDigest, name: builder.baseName(digest: pull.manifestDigest),
                architecture: pull.platform.architecture, pull: pull, localFile: nil, config: pull.config, imageReference: reference)
        case .local(let path)?:
            var info = stat()
            guard stat(path, &info) == 0 else {
                throw Diagnostic(kind: .notFound, file: path, message: "the EDF's image file does not exist")
            }
            // A squashfs file is named by its path, size and time (hashing gigabytes on every
            // run would cost more than the check saves), and by its config file beside it (its
            // variables go into the builder's base: one that appears or changes is another base).
            var config: PullResult.ImageConfigSummary?
            var configText = ""
            if let text = try? FileReader.readText(path + ".json"), let squash = try? JSONDecoder().decode(SquashResult.self, from: Data(text.utf8)) {
                config = squash.config
                configText = (try? Output.json(squash.config)) ?? text
            }
            let digest = Digest(
                of: Array("\(path)\0\(info.st_size)\0\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)\0\(configText)".utf8)).description
            return BaseImage(
                reference: path, digest: digest, name: builder.baseName(digest: digest), architecture: Puller.hostPlatform().architecture,
                pull: nil, localFile: path, config: config, imageReference: nil)
        case nil:
            return nil
        }
    }

    /// Whether a FROM's image names this base: the same reference in either form, or the file.
    func matches(_ image: String) -> Bool {
        if let localFile { return image == localFile }
        guard let mine = imageReference, let other = try? ImageReference.parse(image) else { return false }
        return mine.registry == other.registry && mine.repository == other.repository && mine.tag == other.tag && mine.digest == other.digest
    }

    /// The base as one squashfs file: the EDF's file, or the pulled image squashed into the image
    /// store as img-squash does (reused when there; in the workspace with EDF_IMAGESTORE=void).
    func squashfs(workspace: String, environment: [String: String], say: @escaping (String) -> Void) throws(Diagnostic) -> String {
        if let localFile { return localFile }
        guard let pull else { throw Diagnostic(kind: .software, message: "a base without an image") }
        let location = try ImageStore.location(environment: environment, cache: pull.cache)
        let directory = location.temporary ? workspace : location.directory
        let target = directory + "/" + pull.imageStoreFileName
        var options = SquashFSOptions()
        options.threads = CPUs.usable
        let builder = ImageBuilder(
            target: target, layers: pull.layers.map(\.path), pull: pull, options: options, fixedTime: nil, keepOwners: false,
            temporary: location.temporary, force: false, say: say)
        return try builder.build().path
    }
}

/// The builds' private directories under the cache's tmp/ (removed with FileWriter.removeTree,
/// which also clears what unsquashfs or the builder left without write permission).
enum Workspace {
    /// Removes what builds that were killed left (`build-<pid>` of a process that is gone).
    /// Called under the build lock.
    static func removeStale(in directory: String, say: (String) -> Void) {
        for name in FileReader.names(inDirectory: directory) ?? [] where name.hasPrefix("build-") {
            guard let pid = Int32(name.dropFirst("build-".count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            FileWriter.removeTree(directory + "/" + name)
            say("removed \(directory)/\(name), left by an interrupted build")
        }
    }

}
