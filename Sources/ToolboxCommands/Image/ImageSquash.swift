import ArgumentParser
import ToolSupport
import Foundation
import Layers
import OCI
import SquashFS
import SystemLibraries
import ToolboxCore
import ToolboxModel

extension Compression: ExpressibleByArgument {}

/// `img-squash`: turns an image's layers into one squashfs file, natively, in one pass.
public struct ImageSquash: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "img-squash",
        abstract: "Turn an image's layers into one squashfs file, in a single pass, without root.",
        discussion: """
            Input: LAYER files (tar, tar+gzip or tar+zstd, bottom layer first; then -o is \
            required), or on stdin the JSON of img-pull, or the environment document with the \
            pulled image ("pull"). Layers are read from the top one down, whiteouts (.wh.NAME) \
            and opaque directories (.wh..wh..opq) applied, and only the files of the final tree \
            are compressed (on all cores) and written: nothing is extracted to disk.

            An image that img-build made with ch-image has its one tar layer removed from the \
            cache once the squashfs is in a lasting image store (it serves nothing else).

            Output: the squashfs file (-o FILE, else the image store), the image config beside it \
            as FILE.json, and on stdout the input document with "squash" added (path, size, \
            digest, ...). Layer files alone give the "squash" object only.

            Image store: $EDF_IMAGESTORE (an absolute directory; void: a file for this run only \
            under $SCRATCH, else $TMPDIR, marked "temporary": true for the step's cleanup to remove), else \
            $SCRATCH/.edf_imagestore, else images/ in the \
            layer cache the image was pulled into. Files are named <registry+repository>+<tag>.<arch>.sqsh (Docker Hub's \
            registry and library/ left out). An image already built for the same manifest digest \
            with the same options is reused (other options: rebuilt); one another tool put there \
            (no FILE.json) is used when it is a whole squashfs image; concurrent runs build it once \
            (the others wait and reuse it); the final path never holds a partial file.

            The output is reproducible: the same layers and options give the same bytes. With \
            SOURCE_DATE_EPOCH set, every timestamp is that time (as enroot does).

            Exit status:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .ioError], meanings: [
                .invalidInput: "invalid input: a damaged or hostile layer (corrupt stream, truncated tar, '..', absolute paths), a bad document",
                .noInput: "a layer file or the output directory does not exist",
                .ioError: "the image could not be written (disk full, permissions): nothing is left at the final path",
            ]))
            """,
        version: toolboxVersion
    )

    @Argument(help: "Layer files, bottom first (tar, tar+gzip, tar+zstd); without them (or -), the document is read from stdin.", completion: .file())
    var layers: [String] = []

    @Option(name: .shortAndLong, help: "Write the image here instead of the image store.", completion: .file())
    var output: String?

    @Option(help: "Compression: zstd, gzip or none.")
    var compression: Compression = .zstd

    @Option(parsing: .unconditional, help: "Compression level (zstd 1-22, default 3; gzip 1-9, default 6).")
    var level: Int?

    @Option(help: "Data block size, a power of two from 4K to 1M.")
    var blockSize: String = "128K"

    @Option(parsing: .unconditional, help: "Compression threads (default: ENROOT_MAX_PROCESSORS, else one per core this process may run on).")
    var threads: Int?

    @Flag(help: "Keep the owners recorded in the layers (default: every file owned by root, as enroot does).")
    var keepOwners = false

    @Flag(help: "Build the image even if the store holds one for the same manifest.")
    var force = false

    @Flag(name: .shortAndLong, help: "No progress messages.")
    var quiet = false

    public init() {}

    static func parseSize(_ text: String) -> Int? {
        let upper = text.uppercased()
        var digits = upper
        var factor = 1
        if upper.hasSuffix("K") || upper.hasSuffix("KB") || upper.hasSuffix("KIB") {
            factor = 1 << 10
            digits = String(upper.prefix { $0.isNumber })
        } else if upper.hasSuffix("M") || upper.hasSuffix("MB") || upper.hasSuffix("MIB") {
            factor = 1 << 20
            digits = String(upper.prefix { $0.isNumber })
        }
        guard let value = Int(digits), value > 0, value <= 1 << 20 else { return nil }
        return value * factor
    }

    public func validate() throws {
        guard let size = Self.parseSize(blockSize), SquashFSOptions.blockSizes.contains(size), size.nonzeroBitCount == 1 else {
            throw ValidationError("--block-size must be a power of two from 4K to 1M, such as 128K or 1M")
        }
        if let level, !compression.levels.contains(level) {
            throw ValidationError("--level for \(compression.rawValue) must be in \(compression.levels.lowerBound)...\(compression.levels.upperBound)")
        }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024") }
        if !layers.isEmpty && layers != ["-"] && output == nil {
            throw ValidationError("give -o FILE: layer files name no image for the image store")
        }
        if let output, output.isEmpty || output.hasSuffix("/") {
            throw ValidationError("-o names the image file to write, not '\(output)'")
        }
    }

    /// What the input was, for the output document.
    private enum Input {
        case files([String])
        case pull(PullResult)
        case document(EnvironmentDocument, PullResult)
    }

    public func run() throws {
        let tool = Self.configuration.commandName ?? "img-squash"
        let context = ProcessContext.current()
        let env = context.environment
        let say: (String) -> Void = { line in if !quiet { StandardStreams.writeError("\(tool): \(line)\n") } }

        let input: Input
        // "-": the document on stdin, as without layer files.
        let layers = self.layers == ["-"] ? [] : self.layers
        if !layers.isEmpty {
            input = .files(layers.map { Path.absolute($0, relativeTo: context.currentDirectory) })
        } else {
            let text = try FileReader.readDocument(from: "img-pull (or img-build)")
            let data = Data(text.utf8)
            // An environment document has a schemaVersion; img-pull's output alone does not.
            let isEnvironment = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["schemaVersion"] != nil
            if isEnvironment {
                let document = try EnvironmentDocument.read(text, source: "<stdin>", previous: "img-pull (or img-build)")
                if document.containerfile != nil && document.build == nil {
                    throw Diagnostic(
                        kind: .invalid, file: "<stdin>", message: "the environment's Containerfile has not been built",
                        hint: "pipe the document through img-build first: edf-expand X | img-pull | img-build | img-squash")
                }
                guard let pull = document.pull else {
                    if case .registry = document.image {
                        throw Diagnostic(
                            kind: .invalid, file: "<stdin>", message: "the environment's image has not been pulled",
                            hint: "pipe the document through img-pull first: edf-expand X | img-pull | img-squash")
                    }
                    say("the environment names no registry image; passed through")
                    try StandardStreams.writeOutput(try Output.json(document))
                    return
                }
                input = .document(document, pull)
            } else {
                let pull: PullResult
                do {
                    pull = try JSONDecoder().decode(PullResult.self, from: data)
                } catch {
                    throw Diagnostic(
                        kind: .syntax, file: "<stdin>", message: "neither img-pull's output nor an environment document: \(describeDecodingError(error))",
                        hint: "pipe in what img-pull prints, or give layer files and -o")
                }
                // (A document's pull is checked with the rest of it, by EnvironmentDocument.read.)
                if let problem = pull.problems.first {
                    throw Diagnostic(
                        kind: .invalid, file: "<stdin>", key: problem.key, message: problem.message,
                        hint: "img-pull writes this part of the document: pipe the image through it again")
                }
                input = .pull(pull)
            }
        }

        var options = SquashFSOptions()
        options.compression = compression
        options.level = level ?? compression.defaultLevel
        options.blockSize = Self.parseSize(blockSize) ?? 128 << 10
        options.threads = try ImagePull.setting(
            threads, variable: "ENROOT_MAX_PROCESSORS", range: 1...1024, default: CPUs.usable, environment: env)
        var fixedTime: UInt32?
        if let epoch = env["SOURCE_DATE_EPOCH"], !epoch.isEmpty {
            guard let value = UInt32(epoch) else {
                throw Diagnostic(kind: .invalid, key: "SOURCE_DATE_EPOCH", message: "\"\(epoch)\" is not a number of seconds", hint: "unset it or give seconds since 1970")
            }
            fixedTime = value
        }

        // Where the image goes.
        let layerPaths: [String]
        let pull: PullResult?
        switch input {
        case .files(let paths):
            layerPaths = paths
            pull = nil
        case .pull(let result), .document(_, let result):
            layerPaths = result.layers.map(\.path)
            pull = result
            // A cached layer changed since img-pull verified it (same size, other bytes: an
            // uncompressed layer would go into the image unnoticed): refused, not squashed.
            for (index, path) in layerPaths.enumerated() where ContentStore.sealState(path) == .changed {
                throw Diagnostic(
                    kind: .invalid, file: path, key: "layers[\(index)]",
                    message: "the layer was changed in the cache since img-pull verified it",
                    hint: "run img-pull again (the pipeline again): it checks the layer and fetches it again if it is corrupt")
            }
        }
        let target: String
        var temporary = false
        if let output {
            target = Path.absolute(output, relativeTo: context.currentDirectory)
        } else if let pull {
            let location = try ImageStore.location(environment: env, cache: pull.cache)
            temporary = location.temporary
            target = location.directory + "/" + pull.imageStoreFileName
        } else {
            throw Diagnostic(kind: .invalid, message: "no output file", hint: "give -o FILE")
        }

        let builder = ImageBuilder(
            target: target, layers: layerPaths, pull: pull, options: options, fixedTime: fixedTime, keepOwners: keepOwners,
            temporary: temporary, force: force, say: say)
        let result = try builder.build()

        switch input {
        case .files:
            try StandardStreams.writeOutput(try Output.json(result))
        case .pull(let pull):
            try StandardStreams.writeOutput(try Output.json(SquashedPull(pull: pull, squash: result)))
        case .document(var document, let pull):
            document.squash = result
            Self.dropBuiltLayers(document: document, pull: pull, squash: result, say: say)
            try StandardStreams.writeOutput(try Output.json(document))
        }
    }

    /// A tree that ch-image built is stored as one tar layer as large as the image, used by
    /// nobody else: once the squashfs is in a lasting image store, it is removed from the cache
    /// (img-build reuses the squashfs; without it, it builds again).
    static func dropBuiltLayers(document: EnvironmentDocument, pull: PullResult, squash: SquashResult, say: (String) -> Void) {
        guard let build = document.build, build.builder.hasPrefix("ch-image"), !squash.temporary,
            pull.registry == BuiltImageNaming.registry, pull.layers.allSatisfy({ $0.mediaType == MediaType.ociLayer })
        else { return }
        for layer in pull.layers where unlink(layer.path) == 0 {
            say("removed the built image's layer \(layer.digest) from the cache: \(squash.path) holds it")
        }
    }
}

/// Builds one image file under its lock, or reuses the one already there.
struct ImageBuilder {
    var target: String
    var layers: [String]
    var pull: PullResult?
    var options: SquashFSOptions
    var fixedTime: UInt32?
    var keepOwners: Bool
    var temporary: Bool
    var force: Bool
    var say: (String) -> Void

    var metadataPath: String { target + ".json" }

    func build() throws(Diagnostic) -> SquashResult {
        let directory = String(target[..<(target.lastIndex(of: "/") ?? target.startIndex)])
        guard FileReader.kind(of: directory.isEmpty ? "/" : directory) == .directory else {
            throw Diagnostic(kind: .notFound, file: directory, message: "the output directory does not exist", hint: "create it first")
        }
        // The image replaces a file by a rename: a directory, a device or a symbolic link there
        // (/dev/stdout) would be replaced, not written to.
        var info = stat()
        if lstat(target, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            throw Diagnostic(
                kind: .output, file: target, message: "is not a regular file (a directory, a symbolic link or a device); the image would replace it",
                hint: "give -o the path of a new or regular file")
        }
        // A store this user may only read (a site's or a group's, filled by others): an image
        // there that fits is used as it is; no lock can be taken, and none is needed to read.
        if access(directory.isEmpty ? "/" : directory, W_OK) != 0 {
            let reason = String(cString: strerror(errno))
            if !force, let existing = reusable() { return existing }
            throw Diagnostic(
                kind: .output, file: directory,
                message: "the image store cannot be written by this user (\(reason)), and it holds no image that fits",
                hint: "use an image store you can write (EDF_IMAGESTORE, -o), or ask its owners to build the image there")
        }
        let lock = try ImageLock.acquire(target + ".lock") { say("waiting for another img-squash of \(target)") }
        InterruptCleanup.arm(removing: target + ".lock")
        defer {
            InterruptCleanup.disarm()
            lock.release()
        }
        removeStaleTemporaries(directory: directory, name: target[target.index(after: target.lastIndex(of: "/") ?? target.startIndex)...])
        if !force, let existing = reusable() { return existing }
        return try buildUnderLock(directory: directory)
    }

    /// How an image is made, for the messages that say why one is rebuilt.
    private static func settings(compression: String, level: Int, blockSize: Int, keepOwners: Bool, sourceDateEpoch: Int64?) -> String {
        var text = "\(compression)\(compression == "none" ? "" : " level \(level)"), \(blockSize / 1024) KiB blocks, "
        text += keepOwners ? "the layers' owners" : "every file owned by root"
        if let sourceDateEpoch { text += ", SOURCE_DATE_EPOCH=\(sourceDateEpoch)" }
        return text
    }

    /// The image already at the target, when it was built from the same manifest with the same
    /// options; an image put there by another tool (no metadata file) is used too, as the
    /// reference system does, when it is a whole squashfs image. Says which, or why not.
    private func reusable() -> SquashResult? {
        guard let pull, FileReader.kind(of: target) == .regularFile else { return nil }
        if let text = try? FileReader.readText(metadataPath),
            let recorded = try? JSONDecoder().decode(SquashResult.self, from: Data(text.utf8))
        {
            // Built from the same manifest and the same layers (a document edited by hand can name
            // a manifest with other layers), and still the file it describes.
            let why: String? =
                if recorded.manifestDigest != pull.manifestDigest {
                    "it was built for \(recorded.manifestDigest ?? "layer files"), not \(pull.manifestDigest)"
                } else if recorded.layers != pull.layers.map(\.digest) {
                    "it was built from other layers than the document names"
                } else if recorded.path != target || fileSize(target) != recorded.size {
                    "it is not the file that \(metadataPath) describes"
                } else {
                    nil
                }
            if let why {
                say("rebuilding \(target): \(why)")
                return nil
            }
            let asked = Self.settings(
                compression: options.compression.rawValue, level: options.level, blockSize: options.blockSize, keepOwners: keepOwners,
                sourceDateEpoch: fixedTime.map(Int64.init))
            let built = Self.settings(
                compression: recorded.compression, level: recorded.level, blockSize: recorded.blockSize,
                keepOwners: recorded.keepOwners ?? false, sourceDateEpoch: recorded.sourceDateEpoch)
            guard asked == built else {
                say("rebuilding \(target): it was built with \(built); this run asks for \(asked)")
                return nil
            }
            say("using \(target) (built before for \(pull.manifestDigest))")
            var result = recorded
            result.reused = true
            result.temporary = temporary
            return result
        }
        guard FileReader.kind(of: metadataPath) == .missing else { return nil }
        let fd = open(target, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let header: SquashFSHeader
        switch SquashFSHeader.read(fd) {
        case .success(let read): header = read
        case .failure(let problem):
            say("\(problem.describe(target)); replacing it (no \(metadataPath): not made by img-squash)")
            return nil
        }
        guard let digest = try? StreamingDigest.of(fd, path: target) else { return nil }
        let result = SquashResult(
            path: target, size: fileSize(target) ?? 0, digest: digest.description, compression: header.compression, level: 0,
            blockSize: header.blockSize, keepOwners: nil, sourceDateEpoch: nil, metadata: metadataPath,
            manifestDigest: pull.manifestDigest, reference: pull.reference, layers: pull.layers.map(\.digest), config: pull.config,
            reused: true, temporary: temporary)
        // Not recorded as built for this manifest (it was not): every use says so.
        say("using \(target), put there by another tool (no \(metadataPath)); delete it to rebuild")
        return result
    }

    private func fileSize(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    private func writeMetadata(_ result: SquashResult, to path: String) throws(Diagnostic) {
        var stored = result
        stored.reused = false
        let text: String
        do {
            text = try Output.json(stored)
        } catch {
            throw Diagnostic(kind: .output, file: path, message: "cannot encode the metadata: \(error)")
        }
        let temporaryPath = path + ".tmp.\(getpid())"
        do {
            try FileWriter.writeFile(temporaryPath, Array(text.utf8)) { code in
                Diagnostic(
                    kind: .output, file: path, message: "cannot write the image's metadata: \(String(cString: strerror(code))); the image is not kept",
                    hint: code == ENOSPC ? "free space there or write the image elsewhere (-o, EDF_IMAGESTORE)" : nil)
            }
        } catch {
            unlink(temporaryPath)
            throw error
        }
        guard rename(temporaryPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw Diagnostic(kind: .output, file: path, message: "cannot rename into place: \(reason)")
        }
    }

    /// Removes what an earlier run that was killed left of this image: `.<name>.tmp.<pid>` files.
    /// Called under the image's lock, which every run holds while it writes its file: one that
    /// is there now is no other run's work in progress (whether its process still exists, as a
    /// zombie, or on another node of a shared store, does not matter).
    private func removeStaleTemporaries(directory: String, name: Substring) {
        let prefix = ".\(name).tmp."
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count)), pid != getpid() else { continue }
            if unlink(directory + "/" + entry) == 0 {
                say("removed \(directory)/\(entry), left by an interrupted run")
            }
        }
    }

    private func buildUnderLock(directory: String) throws(Diagnostic) -> SquashResult {
        let started = Date()
        let name = target[target.index(after: target.lastIndex(of: "/") ?? target.startIndex)...]
        let temporaryPath = "\(directory)/.\(name).tmp.\(getpid())"
        InterruptCleanup.arm(removing: temporaryPath)
        let fd = open(temporaryPath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o664)
        guard fd >= 0 else {
            let code = errno
            throw Diagnostic(
                kind: .output, file: temporaryPath, message: "cannot create the image file: \(String(cString: strerror(code)))",
                hint: "write the image to a writable directory (-o, EDF_IMAGESTORE)")
        }
        var keep = false
        defer {
            close(fd)
            if !keep { unlink(temporaryPath) }
        }
        let writer = try SquashFSWriter(fd: fd, path: target, options: options)
        var flattenOptions = Flattener.Options()
        flattenOptions.keepOwners = keepOwners
        flattenOptions.fixedTime = fixedTime
        let flattener = Flattener(writer: writer, options: flattenOptions) { diagnostic in
            StandardStreams.writeError(diagnostic.rendered(tool: "img-squash"))
        }
        let summary: SquashFSWriter.Summary
        do {
            try flattener.add(layers: layers) { index, path in
                let label = pull.map { $0.layers[index].digest } ?? path
                say("layer \(index + 1)/\(layers.count): \(label)")
            }
            summary = try writer.finish(tree: flattener.tree(), modificationTime: flattener.imageTime)
        } catch {
            writer.abandon()
            throw error
        }
        guard fsync(fd) == 0 else {
            throw Diagnostic(kind: .output, file: target, message: "cannot sync the image: \(String(cString: strerror(errno)))")
        }
        lseek(fd, 0, SEEK_SET)
        let digest = try StreamingDigest.of(fd, path: temporaryPath)
        let result = SquashResult(
            path: target, size: Int64(summary.size), digest: digest.description, compression: options.compression.rawValue,
            level: options.level, blockSize: options.blockSize, keepOwners: keepOwners, sourceDateEpoch: fixedTime.map(Int64.init),
            metadata: metadataPath, manifestDigest: pull?.manifestDigest,
            reference: pull?.reference, layers: pull?.layers.map(\.digest) ?? layers, config: pull?.config, reused: false,
            temporary: temporary)
        // The image first, then its metadata: an image beside the metadata of another one is never
        // left behind (a run stopped in between leaves a new image with the old metadata, which
        // names another manifest: the next run builds again).
        guard rename(temporaryPath, target) == 0 else {
            throw Diagnostic(kind: .output, file: target, message: "cannot rename the image into place: \(String(cString: strerror(errno)))")
        }
        keep = true
        do {
            try writeMetadata(result, to: metadataPath)
        } catch {
            // An image without its metadata would pass for another tool's next time: nothing at
            // the final path instead (the old metadata goes too: it names another build).
            unlink(target)
            unlink(metadataPath)
            throw error
        }
        let seconds = Date().timeIntervalSince(started)
        let stats = flattener.statistics
        say(
            "wrote \(target): \(summary.size >> 20) MiB, \(summary.inodes) inodes (\(stats.skipped) layer members hidden by higher layers, \(summary.duplicateFiles) duplicate files stored once) in \(String(format: "%.2f", seconds)) s"
        )
        return result
    }
}

/// On SIGINT, SIGTERM, SIGHUP or SIGPIPE (a closed stderr) while an image's lock is held: remove
/// the lock file and the temporary image, then die of the signal. The paths live in C memory set
/// up before the signal can arrive (a signal handler cannot capture Swift context); one
/// process builds one image, so a fixed table of a few paths is enough.
enum InterruptCleanup {
    private static let capacity = 4
    /// A plain C table, not a Swift array: the handler reads it without touching Swift storage.
    nonisolated(unsafe) private static let paths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let table = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        table.initialize(repeating: nil, count: capacity)
        return table
    }()
    nonisolated(unsafe) private static var count = 0
    private static let signals = [SIGINT, SIGTERM, SIGHUP, SIGPIPE]

    static func arm(removing file: String) {
        guard count < capacity else { return }
        paths[count] = strdup(file)
        count += 1
        // A parent may have blocked these signals (the mask is inherited): unblock them, before
        // the compression threads start, so that they do stop the build.
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in signals { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        for signal in signals {
            Glibc.signal(signal) { number in
                for index in 0..<InterruptCleanup.count {
                    if let path = InterruptCleanup.paths[index] { unlink(path) }
                }
                Glibc.signal(number, SIG_DFL)
                raise(number)
            }
        }
    }

    static func disarm() {
        for signal in signals { Glibc.signal(signal, SIG_DFL) }
        let armed = count
        count = 0
        for index in 0..<armed {
            free(paths[index])
            paths[index] = nil
        }
    }
}

extension PullResult {
    /// The file name the image gets in the image store (ImageStore.fileName's rules).
    var imageStoreFileName: String {
        ImageStore.fileName(registry: registry, repository: repository, tag: tag, digest: manifestDigest, architecture: platform.architecture)
    }
}
