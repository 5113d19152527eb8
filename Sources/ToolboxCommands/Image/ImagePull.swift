import ArgumentParser
import ToolSupport
import Foundation
import Layers
import OCI
import Registry
import ToolboxCore
import ToolboxModel

/// `img-pull`: fetches an image from a registry into the shared, verified layer cache.
public struct ImagePull: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "img-pull",
        abstract: "Pull an OCI image from a registry into the shared, verified layer cache.",
        discussion: """
            Input: an OCI image layout directory or a docker save / OCI archive tar file (a path \
            starting with / or .; --tag picks one of several images), a REFERENCE (docker form nvcr.io/nvidia/pytorch:24.01-py3, enroot form \
            nvcr.io#nvidia/pytorch:24.01-py3, a tag and/or @sha256: digest), or, without one, the \
            environment document of edf-expand on stdin: its image is pulled and the document is \
            passed through with the result added as "pull" (a local image or none passes unchanged).

            Output (stdout): JSON with the normalised reference, the manifest digest, the platform, \
            the image config (Env, Entrypoint, Cmd, WorkingDir, User, Volumes, Labels) and the \
            layers in order (digest, media type, size, path in the cache). Progress on stderr: a live bar on a terminal, a line per layer otherwise.

            Cache: blobs/sha256/<hex> under --cache, else $TOOLBOX_CACHE, else \
            $XDG_CACHE_HOME/toolbox, else ~/.cache/toolbox. A blob appears only complete and \
            verified; concurrent pulls fetch each blob once. Credentials: \
            $ENROOT_CONFIG_PATH/.credentials (netrc; default ${XDG_CONFIG_HOME:-~/.config}/enroot/.credentials), then \
            $DOCKER_CONFIG/config.json (default ~/.docker/config.json). Plain HTTP only with --allow-http or ENROOT_ALLOW_HTTP=yes.

            Exit status:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .ioError, .tempFail, .noPermission], meanings: [
                .invalidInput: "invalid input: a bad reference or document, a blob or manifest that does not match its digest, a malformed or unsupported manifest, a damaged archive",
                .noInput: "not found: a path, image, tag, platform, or (--offline) not in the cache",
                .ioError: "the cache could not be written (disk full, permissions)",
            ]))
            """,
        version: toolboxVersion
    )

    @Argument(help: "The image to pull, or an OCI layout directory or image archive (a path); without it (or -), the environment document is read from stdin.")
    var reference: String?

    @Option(help: "With a layout or archive holding several images: the one with this name (ref.name, or RepoTag of docker save), compared as docker compares names; a tag alone when only one image has it.")
    var tag: String?

    @Option(help: "The cache directory.", completion: .directory)
    var cache: String?

    @Option(help: "The architecture to pull from a multi-platform image (amd64, arm64, arm64/v8, x86_64, ...); default: this machine's.")
    var arch: String?

    @Flag(help: "Allow plain HTTP to the registry (also ENROOT_ALLOW_HTTP=yes).")
    var allowHTTP = false

    @Flag(help: "Resolve from the cache alone; fail if anything is missing. (Without it, a registry out of reach serves a tag pulled before from the cache, with a warning.)")
    var offline = false

    @Flag(help: "Re-hash the layers already in the cache; corrupt ones are fetched again.")
    var verify = false

    @Option(parsing: .unconditional, help: "Parallel connections for layer downloads (default: ENROOT_MAX_CONNECTIONS, else 10).")
    var connections: Int?

    @Option(parsing: .unconditional, help: "Retries of a failed request (connection errors, 429, 5xx) before giving up (default: ENROOT_TRANSFER_RETRIES, else 4).")
    var retries: Int?

    @Option(help: "A CA certificate file for registries with their own certificate authority (else CURL_CA_BUNDLE, else SSL_CERT_FILE, as curl takes them).", completion: .file())
    var caFile: String?

    @Flag(name: .shortAndLong, help: "No progress messages.")
    var quiet = false

    public init() {}

    public func validate() throws {
        if let connections, connections < 1 || connections > 256 { throw ValidationError("--connections must be between 1 and 256") }
        if let retries, retries < 0 || retries > 100 { throw ValidationError("--retries must be between 0 and 100") }
        if let arch, Puller.platform(architecture: arch) == nil {
            throw ValidationError("--arch \"\(arch)\" is not an architecture: give one as amd64, arm64, arm64/v8, arm/v7 or x86_64 (linux/ before it is allowed)")
        }
        if cache == "" { throw ValidationError("--cache needs a directory, not an empty value") }
        if caFile == "" { throw ValidationError("--ca-file needs a file, not an empty value") }
    }

    /// An option's value, else an enroot variable's, else the default; a variable out of range is
    /// an error (also used by img-squash).
    static func setting(_ option: Int?, variable: String, range: ClosedRange<Int>, default fallback: Int, environment: [String: String]) throws -> Int {
        if let option { return option }
        guard let text = environment[variable], !text.isEmpty else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw Diagnostic(kind: .invalid, key: variable, message: "\"\(text)\" is not a number from \(range.lowerBound) to \(range.upperBound)", hint: "unset it or give a number in range")
        }
        return value
    }

    public func run() throws {
        let tool = Self.configuration.commandName ?? "img-pull"
        let context = ProcessContext.current()
        let env = context.environment

        /// What to pull: a registry image, or a layout directory or archive file.
        enum Target {
            case registry(ImageReference)
            case path(String)
        }
        var document: EnvironmentDocument?
        var target: Target?
        // "-": the document on stdin, as without a reference.
        let reference = self.reference == "-" ? nil : self.reference
        if let reference, reference.hasPrefix("/") || reference.hasPrefix(".") {
            target = .path(Path.absolute(reference, relativeTo: context.currentDirectory))
        } else if let reference {
            do {
                target = .registry(try ImageReference.parse(reference))
            } catch {
                throw Diagnostic(kind: .invalid, message: error.message, hint: error.hint)
            }
        } else {
            let text = try FileReader.readDocument(from: "edf-expand")
            document = try EnvironmentDocument.read(text, source: "<stdin>", previous: "edf-expand")
            if case .registry(let r) = document?.image { target = .registry(r) }
        }

        guard let target else {
            // A local image, or none: nothing to pull.
            if !quiet { StandardStreams.writeError("\(tool): the environment names no registry image; passed through\n") }
            try StandardStreams.writeOutput(try Output.json(document))
            return
        }

        guard let root = cache ?? ContentStore.defaultRoot(environment: env) else {
            throw Diagnostic(kind: .invalid, message: "no cache directory: HOME is not set", hint: "give --cache DIR or set TOOLBOX_CACHE")
        }
        let store = try ContentStore(root: Path.absolute(root, relativeTo: context.currentDirectory))
        var options = Puller.Options(platform: arch.flatMap(Puller.platform(architecture:)) ?? Puller.hostPlatform())
        options.platformAsked = arch != nil
        options.warning = { line in StandardStreams.writeError("\(tool): warning: \(line)\n") }
        options.offline = offline
        options.verify = verify
        options.registry.allowHTTP = allowHTTP || ["yes", "y", "true", "1"].contains((env["ENROOT_ALLOW_HTTP"] ?? "").lowercased())
        options.registry.retries = try Self.setting(retries, variable: "ENROOT_TRANSFER_RETRIES", range: 0...100, default: 4, environment: env)
        options.registry.http.maxConnections = try Self.setting(connections, variable: "ENROOT_MAX_CONNECTIONS", range: 1...256, default: 10, environment: env)
        // As the curl program that enroot runs: CURL_CA_BUNDLE, else SSL_CERT_FILE, when no
        // --ca-file is given; SSL_CERT_DIR for a directory of certificates.
        let bundle: (path: String, origin: String)? =
            caFile.map { ($0, "--ca-file") }
            ?? ["CURL_CA_BUNDLE", "SSL_CERT_FILE"].lazy.compactMap { name in env[name].flatMap { $0.isEmpty ? nil : ($0, name) } }.first
        if let bundle {
            // Checked before any request: libcurl would report it as a failure to connect.
            let path = Path.absolute(bundle.path, relativeTo: context.currentDirectory)
            let hint = "give \(bundle.origin) the PEM file of the registry's certificate authority"
            let variable = bundle.origin == "--ca-file" ? nil : bundle.origin
            switch FileReader.kind(of: path) {
            case .regularFile: break
            case .missing:
                throw Diagnostic(kind: .notFound, file: path, key: variable, message: "the CA certificate file does not exist", hint: hint)
            default:
                throw Diagnostic(kind: .invalid, file: path, key: variable, message: "the CA certificate file is not a regular file", hint: hint)
            }
            options.registry.http.caFile = path
        }
        if let directory = env["SSL_CERT_DIR"], !directory.isEmpty, FileReader.kind(of: directory) == .directory {
            options.registry.http.caDirectory = directory
        }
        if !quiet {
            options.progress = { line in StandardStreams.writeError("\(tool): \(line)\n") }
            options.progressBar = isatty(STDERR_FILENO) != 0 && env["TERM"] != "dumb"
        }
        let puller = Puller(store: store, credentials: CredentialStore(environment: env), options: options)
        let result: PullResult
        switch target {
        case .registry(let imageReference):
            result = try puller.pull(imageReference)
        case .path(let path):
            switch FileReader.kind(of: path) {
            case .missing:
                throw Diagnostic(
                    kind: .notFound, file: path, message: "no such file or directory",
                    hint: "give an OCI image layout directory, a docker save or OCI archive file, or a registry reference")
            case .regularFile: result = try Self.pull(archive: path, tag: tag, puller: puller)
            case .directory, .other: result = try puller.pull(layout: path, tag: tag)
            case .inaccessible(let reason):
                throw Diagnostic(kind: .unreadable, file: path, message: "cannot be reached: \(reason)", hint: "check the permissions of its directories (ls -ld)")
            }
        }
        if var document {
            // What later stages made from an earlier pull (a build on it, its squashfs) does not
            // go with this one: dropped, so that img-build and img-squash make (or reuse) them
            // for what was pulled now, instead of passing the old ones through.
            if document.pull != result {
                if !quiet && (document.build != nil || document.squash != nil) {
                    StandardStreams.writeError("\(tool): the document's build and image were made from another pull: left for img-build and img-squash to make again\n")
                }
                document.build = nil
                document.squash = nil
            }
            document.pull = result
            try StandardStreams.writeOutput(try Output.json(document))
        } else {
            try StandardStreams.writeOutput(try Output.json(result))
        }
    }

    /// A docker save or OCI archive, also compressed (`docker save | gzip`, or zstd): an archive is
    /// read by offsets, so a compressed one is first decompressed into the cache's temporary
    /// directory, and that copy removed afterwards.
    static func pull(archive path: String, tag: String?, puller: Puller) throws(Diagnostic) -> PullResult {
        let stream = try LayerStream(path: path)
        guard stream.compression != .none else { return try puller.pull(archive: path, tag: tag) }
        let (fd, copy): (Int32, String)
        switch FileWriter.createUnique(in: puller.store.temporary, prefix: "archive", suffix: ".tar") {
        case .success(let created): (fd, copy) = created
        case .failure(let error):
            throw Diagnostic(
                kind: .output, file: puller.store.temporary, message: "cannot create a file to decompress \(path) into: \(error.reason)")
        }
        defer { unlink(copy) }
        do {
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let count = try buffer.withUnsafeMutableBytes { raw in Result { () throws(Diagnostic) in try stream.read(into: raw) } }.get()
                if count == 0 { break }
                try buffer.withUnsafeBytes { raw in
                    Result { () throws(Diagnostic) in
                        try FileWriter.writeAll(fd, UnsafeRawBufferPointer(rebasing: raw[0..<count])) { code in
                            Diagnostic(kind: .output, file: copy, message: "cannot write the decompressed archive: \(String(cString: strerror(code)))")
                        }
                    }
                }.get()
            }
        }
        return try puller.pull(archive: path, tag: tag, reading: copy)
    }
}
