#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FoundationEssentials
import OCI
import ToolboxCore
import ToolboxModel

/// An OCI image layout of an image in the cache, for builders that import images from one.
public enum OCILayout {
    /// Writes `directory` (which must not exist): oci-layout, index.json, and the blobs as hard
    /// links to the cached ones (copies where a link cannot be made).
    public static func write(_ pull: PullResult, to directory: String) throws(Diagnostic) {
        for path in [directory, directory + "/blobs", directory + "/blobs/sha256"] where mkdir(path, 0o755) != 0 {
            throw Diagnostic(kind: .output, file: path, message: "cannot create: \(String(cString: strerror(errno)))")
        }
        let manifest = pull.cache + "/blobs/sha256/" + (pull.manifestDigest.split(separator: ":").last.map(String.init) ?? "")
        var info = stat()
        guard stat(manifest, &info) == 0 else {
            throw Diagnostic(kind: .notFound, file: manifest, message: "the base image's manifest is not in the cache", hint: "pull it again with img-pull")
        }
        for (file, digest) in [(manifest, pull.manifestDigest), (pull.config.path, pull.config.digest)] + pull.layers.map({ ($0.path, $0.digest) }) {
            let target = directory + "/blobs/sha256/" + (digest.split(separator: ":").last.map(String.init) ?? digest)
            if FileReader.kind(of: target) == .regularFile { continue }
            if link(file, target) != 0 { try copy(file, to: target) }
        }
        let parsed: Digest
        do {
            parsed = try Digest(parsing: pull.manifestDigest)
        } catch {
            throw Diagnostic(kind: .invalid, message: "bad manifest digest \(pull.manifestDigest): \(error.description)")
        }
        let index = Index(manifests: [Descriptor(mediaType: pull.mediaType, digest: parsed, size: Int64(info.st_size))])
        try write(Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8), to: directory + "/oci-layout")
        try write(try JSON.bytes(index), to: directory + "/index.json")
    }

    static func copy(_ source: String, to target: String) throws(Diagnostic) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw Diagnostic(kind: .unreadable, file: source, message: "cannot read: \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw Diagnostic(kind: .output, file: target, message: "cannot create: \(String(cString: strerror(errno)))") }
        defer { close(output) }
        try FileReader.stream(input, path: source) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in
            try FileWriter.writeAll(output, chunk) { code in
                Diagnostic(kind: .output, file: target, message: "cannot write: \(String(cString: strerror(code)))")
            }
        }
    }

    static func write(_ bytes: [UInt8], to path: String) throws(Diagnostic) {
        try FileWriter.writeFile(path, bytes) { code in Diagnostic(kind: .output, file: path, message: "cannot write: \(String(cString: strerror(code)))") }
    }
}

/// Deterministic JSON for blobs (keys sorted, no spaces).
enum JSON {
    static func bytes(_ value: some Encodable) throws(Diagnostic) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw Diagnostic(kind: .software, message: "cannot encode JSON: \(error)")
        }
    }
}

/// Stores a built tree in the cache as a one-layer OCI image (an uncompressed tar layer: it is
/// read once, by img-squash, on this machine).
public enum ImageAssembler {
    public struct Stored: Sendable {
        public var manifest: Digest
        public var config: Digest
        public var layer: Descriptor
        public var configuration: ImageConfiguration
    }

    public static func store(
        tree: String, excluding: [String], runtime: ImageConfiguration.Runtime, architecture: String, in store: ContentStore,
        environment: [String: String]
    ) throws(Diagnostic) -> Stored {
        // tar writes to a pipe; the layer is hashed and written as it comes (one pass over it).
        var arguments = ["tar", "--sort=name", "--numeric-owner", "--format=pax", "-C", tree, "-cf", "-"]
        arguments += excluding.map { "--exclude=" + $0 }
        var received: ContentStore.Received?
        let status = try ChildProcess.runStreaming(arguments + ["."], environment: environment) { fd throws(Diagnostic) in
            received = try store.receive(from: fd, source: "tar of \(tree)")
        }
        guard let received else { throw Diagnostic(kind: .software, message: "tar's output was not read") }
        guard status == 0 else {
            store.discard(received)
            throw Diagnostic(
                kind: .output, file: tree, message: "cannot write the built image as a tar layer: tar exited with status \(status)",
                hint: "tar's message is above; GNU tar must be installed and the image's files readable")
        }
        try store.adopt(received)
        let (layerDigest, layerSize) = (received.digest, received.size)
        let configuration = ImageConfiguration(
            architecture: architecture, os: "linux", config: runtime, rootfs: .init(diff_ids: [layerDigest]))
        let configBytes = try JSON.bytes(configuration)
        let configDigest = try store.store(configBytes)
        let layer = Descriptor(mediaType: MediaType.ociLayer, digest: layerDigest, size: layerSize)
        let manifest = Manifest(
            schemaVersion: 2, mediaType: MediaType.ociManifest,
            config: Descriptor(mediaType: MediaType.ociConfig, digest: configDigest, size: Int64(configBytes.count)), layers: [layer],
            annotations: nil)
        let manifestDigest = try store.store(try JSON.bytes(manifest))
        return Stored(manifest: manifestDigest, config: configDigest, layer: layer, configuration: configuration)
    }
}
