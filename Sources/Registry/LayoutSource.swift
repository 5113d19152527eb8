#if canImport(Glibc)
import Glibc
#endif
import Foundation
import OCI
import ToolboxCore
import ToolboxModel

/// An OCI image layout directory as a source (image-spec image-layout.md): `oci-layout`,
/// `index.json`, `blobs/sha256/<hex>`. Users build images elsewhere (podman, buildah, skopeo,
/// umoci) and bring the directory; its blobs are copied into the cache, each verified.
struct LayoutSource: Puller.Source {
    let puller: Puller
    let root: String

    func path(_ digest: Digest) -> String { root + "/blobs/sha256/" + digest.hex }

    static let damaged = "the layout is damaged; copy it again"
    static let incomplete = "the layout is incomplete; copy it again"

    func manifest(_ digest: Digest) throws(Diagnostic) -> [UInt8] { try small(digest) }
    func config(_ digest: Digest) throws(Diagnostic) -> [UInt8] { try small(digest) }

    func small(_ digest: Digest) throws(Diagnostic) -> [UInt8] {
        let file = path(digest)
        let fd = try FileReader.openRegularFile(
            file, what: "blob \(digest)", missing: ("blob \(digest) is missing from the layout", Self.incomplete), hint: Self.damaged)
        defer { close(fd) }
        var bytes: [UInt8] = []
        try FileReader.stream(fd, path: file) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in
            bytes += chunk
            if bytes.count > 16 << 20 {
                throw Diagnostic(kind: .invalid, file: file, message: "blob \(digest) is larger than 16 MiB; not a manifest or config", hint: Self.damaged)
            }
        }
        guard Digest(of: bytes) == digest else {
            throw Diagnostic(kind: .invalid, file: file, message: "blob does not match its digest \(digest)", hint: Self.damaged)
        }
        try puller.store.store(bytes, expected: digest)
        return bytes
    }

    /// Copies layers into the cache, hashing as they stream; a layer that does not match its
    /// digest is not cached.
    func fetchLayers(_ layers: [Descriptor]) throws(Diagnostic) {
        let store = puller.store
        for (i, layer) in layers.enumerated() {
            let file = path(layer.digest)
            let fd = try FileReader.openRegularFile(
                file, what: "layer \(layer.digest)", missing: ("layer \(layer.digest) is missing from the layout", Self.incomplete), hint: Self.damaged)
            defer { close(fd) }
            try store.ingest(layer.digest, size: layer.size, damagedHint: Self.damaged + " (nothing was cached)") {
                write throws(Diagnostic) in try FileReader.stream(fd, path: file, write)
            }
            puller.options.progress?("\(layer.digest) \(LayerDownload.size(layer.size)) (\(i + 1)/\(layers.count))")
        }
    }
}

extension Puller {
    /// Imports an image from an OCI layout directory; `tag` picks an entry of index.json by its
    /// `org.opencontainers.image.ref.name` annotation (needed when there are several).
    public func pull(layout directory: String, tag: String?) throws(Diagnostic) -> PullResult {
        guard FileReader.kind(of: directory + "/oci-layout") == .regularFile else {
            throw Diagnostic(
                kind: .invalid, file: directory, message: "not an OCI image layout (no oci-layout file)",
                hint: "give a directory written by skopeo copy ... oci:DIR, podman save --format oci-dir, or umoci")
        }
        let indexPath = directory + "/index.json"
        let text = try FileReader.readText(indexPath)
        let index: Index
        do {
            index = try JSONDecoder().decode(Index.self, from: Data(text.utf8))
        } catch {
            throw Diagnostic(kind: .invalid, file: indexPath, message: "malformed index: \(describeDecodingError(error))")
        }
        let refKey = "org.opencontainers.image.ref.name"
        let names = index.manifests.compactMap { $0.annotations?[refKey] }
        let entry: Descriptor
        if let tag {
            let named = try Self.named(tag, among: index.manifests, path: indexPath, key: \.digest.description) { entry in
                [entry.annotations?[refKey], entry.annotations?["io.containerd.image.name"]].compactMap { $0 }
            }
            guard let found = named else {
                throw Diagnostic(kind: .notFound, file: indexPath, message: "no image tagged '\(tag)'; the layout has: \(names.isEmpty ? "no tags" : names.joined(separator: ", "))")
            }
            entry = found
        } else if index.manifests.count == 1, let only = index.manifests.first {
            entry = only
        } else {
            throw Diagnostic(
                kind: .invalid, file: indexPath,
                message: index.manifests.isEmpty ? "the layout holds no image" : "the layout holds \(index.manifests.count) images; choose one with --tag",
                hint: names.isEmpty ? nil : "tags: \(names.joined(separator: ", "))")
        }
        let source = LayoutSource(puller: self, root: directory)
        let bytes = try source.small(entry.digest)
        let label = "oci:" + directory + (tag.map { ":" + $0 } ?? "")
        return try resolve(
            top: entry.digest, bytes: bytes, source: source,
            name: (label, "local", directory, tag ?? entry.annotations?[refKey]))
    }
}
