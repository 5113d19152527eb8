#if canImport(Glibc)
import Glibc
#endif
import Foundation
import OCI
import ToolboxCore
import ToolboxModel

/// Where each regular file of a tar archive lies: an index made in one pass over the headers
/// (ustar, GNU long names and link names, pax `path` and `linkpath`), without extracting
/// anything. A hard link is the member it links to (an earlier one, as tar writes them).
struct TarIndex {
    /// The hint for a member the archive lacks.
    static let incomplete = "the archive is incomplete or was not written by docker save, podman save or skopeo; make it again"

    struct Entry {
        var offset: Int64
        var size: Int64
    }

    /// The archive as messages name it.
    let path: String
    let fd: Int32
    private(set) var entries: [String: Entry] = [:]

    /// `file`: where the bytes are, when not at `path` (a decompressed copy of a compressed archive).
    init(path: String, reading file: String? = nil) throws(Diagnostic) {
        self.path = path
        fd = open(file ?? path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw Diagnostic(kind: .notFound, file: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        var info = stat()
        let fileSize = fstat(fd, &info) == 0 ? Int64(info.st_size) : Int64.max
        var offset: Int64 = 0
        var longName: String?
        var longLink: String?
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            let complete = try readExactly(&header, at: offset)
            guard complete, offset > 0 || Self.checksumValid(header) else {
                throw Diagnostic(
                    kind: .invalid, file: path, message: offset == 0 ? "not a tar archive" : "truncated tar archive at byte \(offset)",
                    hint: "give a docker save or OCI archive .tar file (also gzip or zstd compressed)")
            }
            if header.allSatisfy({ $0 == 0 }) { break }
            guard Self.checksumValid(header) else {
                throw Diagnostic(kind: .invalid, file: path, message: "not a tar archive (bad header checksum at byte \(offset))", hint: "give a docker save or OCI archive .tar file (also gzip or zstd compressed)")
            }
            let size = Self.number(header[124..<136])
            let type = header[156]
            let dataOffset = offset + 512
            var name = Self.string(header[0..<100])
            if header[257..<262].elementsEqual("ustar".utf8) {
                let prefix = Self.string(header[345..<500])
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            // Every member's data is skipped by its size, which must lie within the file.
            guard size >= 0, size <= fileSize - dataOffset else {
                throw Diagnostic(
                    kind: .invalid, file: path,
                    message: size < 0
                        ? "not a tar archive (a negative size at byte \(offset))"
                        : "truncated tar archive: member '\(name)' at byte \(offset) has \(size) bytes, but the file ends at byte \(fileSize)",
                    hint: "the archive is incomplete or damaged: make or copy it again")
            }
            switch type {
            case UInt8(ascii: "L"):
                longName = Self.string(try read(count: Int(size), at: dataOffset)[...])
            case UInt8(ascii: "K"):
                longLink = Self.string(try read(count: Int(size), at: dataOffset)[...])
            case UInt8(ascii: "x"):
                let pax = String(decoding: try read(count: Int(size), at: dataOffset), as: UTF8.self)
                for record in pax.split(separator: "\n") {
                    guard let space = record.firstIndex(of: " ") else { continue }
                    let kv = record[record.index(after: space)...]
                    if kv.hasPrefix("path=") { longName = String(kv.dropFirst(5)) }
                    if kv.hasPrefix("linkpath=") { longLink = String(kv.dropFirst(9)) }
                }
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
                let full = longName ?? name
                longName = nil
                longLink = nil
                entries[Self.clean(full)] = Entry(offset: dataOffset, size: size)
            case UInt8(ascii: "1"):
                let full = longName ?? name
                let target = longLink ?? Self.string(header[157..<257])
                longName = nil
                longLink = nil
                // Only to a member already seen: the data lies there.
                if let linked = entries[Self.clean(target)] { entries[Self.clean(full)] = linked }
            default:
                longName = nil
                longLink = nil
            }
            offset = dataOffset + (size + 511) / 512 * 512
        }
    }

    func close() { Glibc.close(fd) }

    static func clean(_ name: String) -> String {
        var n = Substring(name)
        while n.hasPrefix("./") { n = n.dropFirst(2) }
        while n.hasPrefix("/") { n = n.dropFirst() }
        return String(n)
    }

    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
    }

    /// Octal, or base-256 (GNU) when the high bit of the first byte is set.
    static func number(_ field: ArraySlice<UInt8>) -> Int64 {
        if let first = field.first, first & 0x80 != 0 {
            return field.dropFirst().reduce(Int64(first & 0x7f)) { ($0 << 8) | Int64($1) }
        }
        let text = string(field).trimmingCharacters(in: CharacterSet(charactersIn: " \0"))
        return Int64(text, radix: 8) ?? 0
    }

    static func checksumValid(_ header: [UInt8]) -> Bool {
        var sum = 0
        for (i, byte) in header.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(byte) }
        return number(header[148..<156]) == Int64(sum)
    }

    func readExactly(_ buffer: inout [UInt8], at offset: Int64) throws(Diagnostic) -> Bool {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        if n < 0 { throw Diagnostic(kind: .unreadable, file: path, message: "cannot read: \(String(cString: strerror(errno)))") }
        return n == buffer.count
    }

    func read(count: Int, at offset: Int64) throws(Diagnostic) -> [UInt8] {
        guard count <= 64 << 20 else { throw Diagnostic(kind: .invalid, file: path, message: "archive member too large to read into memory") }
        var buffer = [UInt8](repeating: 0, count: count)
        guard try readExactly(&buffer, at: offset) else { throw Diagnostic(kind: .invalid, file: path, message: "truncated tar archive") }
        return buffer
    }

    func read(_ name: String) throws(Diagnostic) -> [UInt8] {
        guard let entry = entries[name] else {
            throw Diagnostic(kind: .notFound, file: path, message: "\(name) is missing from the archive", hint: TarIndex.incomplete)
        }
        return try read(count: Int(entry.size), at: entry.offset)
    }

    /// Streams a member through `body`, 1 MiB at a time.
    func stream(_ entry: Entry, _ body: (UnsafeRawBufferPointer) throws(Diagnostic) -> Void) throws(Diagnostic) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var done: Int64 = 0
        while done < entry.size {
            let want = Int(min(Int64(buffer.count), entry.size - done))
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(entry.offset + done)) }
            if n <= 0 { throw Diagnostic(kind: .invalid, file: path, message: "truncated tar archive") }
            let result = buffer.withUnsafeBytes { raw in Result { () throws(Diagnostic) in try body(UnsafeRawBufferPointer(rebasing: raw[0..<n])) } }
            try result.get()
            done += Int64(n)
        }
    }
}

/// A `docker save` or OCI archive tar file as a source. An OCI archive (oci-layout, index.json,
/// blobs/) is read like a layout directory; a docker save archive (manifest.json with Config and
/// Layers) gets an OCI manifest made for it, with its uncompressed tar layers.
struct ArchiveSource: Puller.Source {
    let puller: Puller
    let tar: TarIndex
    /// Blobs by digest: where they are in the archive.
    var members: [Digest: TarIndex.Entry] = [:]
    /// Blobs made here (the manifest of a docker save archive).
    var made: [Digest: [UInt8]] = [:]

    func manifest(_ digest: Digest) throws(Diagnostic) -> [UInt8] { try small(digest) }
    func config(_ digest: Digest) throws(Diagnostic) -> [UInt8] { try small(digest) }

    func small(_ digest: Digest) throws(Diagnostic) -> [UInt8] {
        let bytes: [UInt8]
        if let m = made[digest] {
            bytes = m
        } else if let entry = members[digest] {
            bytes = try tar.read(count: Int(entry.size), at: entry.offset)
        } else {
            throw Diagnostic(kind: .notFound, file: tar.path, message: "blob \(digest) is missing from the archive", hint: TarIndex.incomplete)
        }
        try puller.store.store(bytes, expected: digest)
        return bytes
    }

    func fetchLayers(_ layers: [Descriptor]) throws(Diagnostic) {
        let store = puller.store
        for (i, layer) in layers.enumerated() {
            guard let entry = members[layer.digest] else {
                throw Diagnostic(kind: .notFound, file: tar.path, message: "layer \(layer.digest) is missing from the archive", hint: TarIndex.incomplete)
            }
            try store.ingest(layer.digest, size: layer.size, damagedHint: "the archive is damaged; make it again (nothing was cached)") {
                write throws(Diagnostic) in try tar.stream(entry, write)
            }
            puller.options.progress?("\(layer.digest) \(LayerDownload.size(layer.size)) (\(i + 1)/\(layers.count))")
        }
    }
}

extension Puller {
    /// Imports an image from a `docker save` or OCI archive tar file; `tag` picks one image
    /// (a RepoTag of docker save, a ref.name of an OCI archive) when there are several.
    /// `file`: where the archive's bytes are when not at `path` (img-pull decompresses a
    /// compressed archive first; messages and the image's name still say `path`).
    ///
    /// `--tag` names the image as docker does: `bb:v1` is `docker.io/library/bb:v1` (the name
    /// skopeo and podman write), and the other way round; a bare tag (`v1`) is any name with that
    /// tag, refused when it names more than one image.
    public func pull(archive path: String, tag: String?, reading file: String? = nil) throws(Diagnostic) -> PullResult {
        let tar = try TarIndex(path: path, reading: file)
        defer { tar.close() }
        var source = ArchiveSource(puller: self, tar: tar)
        for (name, entry) in tar.entries where name.hasPrefix("blobs/sha256/") {
            if let digest = try? Digest(parsing: "sha256:" + name.dropFirst("blobs/sha256/".count)) { source.members[digest] = entry }
        }
        let label = "archive:" + path + (tag.map { ":" + $0 } ?? "")
        if tar.entries["index.json"] != nil {
            let index: Index
            do {
                index = try JSONDecoder().decode(Index.self, from: Data(try tar.read("index.json")))
            } catch let error as Diagnostic {
                throw error
            } catch {
                throw Diagnostic(kind: .invalid, file: path, message: "malformed index.json: \(describeDecodingError(error))")
            }
            let refKey = "org.opencontainers.image.ref.name"
            let names = index.manifests.compactMap { $0.annotations?[refKey] }
            let chosen = try tag.flatMap { (t: String) throws(Diagnostic) in
                try Self.named(t, among: index.manifests, path: path, key: \.digest.description) { entry in
                    [entry.annotations?[refKey], entry.annotations?["io.containerd.image.name"]].compactMap { $0 }
                }
            } ?? (tag == nil && index.manifests.count == 1 ? index.manifests.first : nil)
            guard let entry = chosen else {
                throw Diagnostic(
                    kind: tag == nil ? .invalid : .notFound, file: path,
                    message: tag == nil ? (index.manifests.isEmpty ? "the archive holds no image" : "the archive holds \(index.manifests.count) images; choose one with --tag") : "no image tagged '\(tag ?? "")'; the archive has: \(names.joined(separator: ", "))")
            }
            let bytes = try source.small(entry.digest)
            return try resolve(top: entry.digest, bytes: bytes, source: source, name: (label, "local", path, tag ?? entry.annotations?[refKey]))
        }
        guard tar.entries["manifest.json"] != nil else {
            throw Diagnostic(kind: .invalid, file: path, message: "neither an OCI archive (index.json) nor a docker save archive (manifest.json)", hint: "make one with docker save, podman save, or skopeo copy ... oci-archive:FILE")
        }
        struct DockerEntry: Decodable {
            var Config: String
            var RepoTags: [String]?
            var Layers: [String]
        }
        let entries: [DockerEntry]
        do {
            entries = try JSONDecoder().decode([DockerEntry].self, from: Data(try tar.read("manifest.json")))
        } catch let error as Diagnostic {
            throw error
        } catch {
            throw Diagnostic(kind: .invalid, file: path, message: "malformed manifest.json: \(describeDecodingError(error))", hint: "the archive was not written by docker save or podman save, or is damaged; make it again")
        }
        let chosen = try tag.flatMap { (t: String) throws(Diagnostic) in
            try Self.named(t, among: entries, path: path, key: \.Config) { $0.RepoTags ?? [] }
        } ?? (tag == nil && entries.count == 1 ? entries.first : nil)
        guard let image = chosen else {
            let tags = entries.flatMap { $0.RepoTags ?? [] }
            throw Diagnostic(
                kind: tag == nil ? .invalid : .notFound, file: path,
                message: tag == nil ? (entries.isEmpty ? "the archive holds no image" : "the archive holds \(entries.count) images; choose one with --tag") : "no image tagged '\(tag ?? "")'; the archive has: \(tags.joined(separator: ", "))")
        }
        // Digests of the config and layers, by hashing them where they lie; a layer's media type
        // from its first bytes (docker save writes tar; crane, kaniko and ko write gzip).
        func describe(_ name: String, layer: Bool) throws(Diagnostic) -> Descriptor {
            guard let entry = tar.entries[TarIndex.clean(name)] else {
                throw Diagnostic(kind: .notFound, file: path, message: "\(name) is missing from the archive", hint: TarIndex.incomplete)
            }
            var hasher = StreamingDigest()
            var head: [UInt8] = []
            try tar.stream(entry) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in
                if head.count < 4 { head += chunk.prefix(4 - head.count) }
                hasher.update(chunk)
            }
            let digest = hasher.finalize()
            source.members[digest] = entry
            var mediaType = MediaType.ociConfig
            if layer {
                mediaType =
                    head.starts(with: [0x1F, 0x8B]) ? MediaType.ociLayerGzip
                    : head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) ? MediaType.ociLayerZstd : MediaType.ociLayer
            }
            return Descriptor(mediaType: mediaType, digest: digest, size: entry.size)
        }
        let config = try describe(image.Config, layer: false)
        var layers: [Descriptor] = []
        for layer in image.Layers { layers.append(try describe(layer, layer: true)) }
        // The config names each layer's uncompressed digest (rootfs.diff_ids): a damaged archive
        // must not pass. A compressed layer (crane, kaniko) is not checked here: its diff_id is
        // that of bytes the archive does not hold as such.
        struct RootFS: Decodable {
            struct Inner: Decodable { var diff_ids: [String]? }
            var rootfs: Inner?
        }
        let diffIDs = (try? JSONDecoder().decode(RootFS.self, from: Data(try tar.read(TarIndex.clean(image.Config)))))?.rootfs?.diff_ids
        if let diffIDs {
            guard diffIDs.count == layers.count else {
                throw Diagnostic(
                    kind: .invalid, file: path,
                    message: "\(image.Config) lists \(diffIDs.count) layers (rootfs.diff_ids) but manifest.json \(layers.count)",
                    hint: "the archive is damaged: save the image again")
            }
            for (index, layer) in layers.enumerated() where layer.mediaType == MediaType.ociLayer && diffIDs[index] != layer.digest.description {
                throw Diagnostic(
                    kind: .invalid, file: path,
                    message: "layer \(image.Layers[index]) has the digest \(layer.digest), but the image config says \(diffIDs[index])",
                    hint: "the archive is damaged: save the image again")
            }
        }
        let manifest = Manifest(schemaVersion: 2, mediaType: MediaType.ociManifest, config: config, layers: layers, annotations: nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try encoder.encode(manifest))
        } catch {
            throw Diagnostic(kind: .invalid, message: "cannot encode a manifest: \(error)")
        }
        let digest = Digest(of: bytes)
        source.made[digest] = bytes
        try store.store(bytes, expected: digest)
        let repoTag = (image.RepoTags ?? []).first { name in tag.map { Self.name(name, matches: $0) } ?? true }
        return try resolve(top: digest, bytes: bytes, source: source, name: (label, "local", path, repoTag ?? tag))
    }

    /// Whether an archive's name for an image (a RepoTag, a ref.name) is the one `asked` for
    /// with --tag: the same string, the same reference once normalised as docker does, or, for a
    /// bare tag (no '/', ':' or '@'), any name with that tag.
    static func name(_ name: String, matches asked: String) -> Bool {
        if name == asked { return true }
        guard let parsed = try? ImageReference.parse(name) else { return false }
        if !asked.contains("/") && !asked.contains(":") && !asked.contains("@") { return parsed.tag == asked }
        guard let wanted = try? ImageReference.parse(asked) else { return false }
        return parsed.registry == wanted.registry && parsed.repository == wanted.repository && parsed.tag == wanted.tag
            && (wanted.digest == nil || parsed.digest == wanted.digest)
    }

    /// The image that `asked` names among an archive's images (see `pull(archive:)`), or nil.
    static func named<Entry>(
        _ asked: String, among entries: [Entry], path: String, key: (Entry) -> String, names: (Entry) -> [String]
    ) throws(Diagnostic) -> Entry? {
        let matches = { (name: String) in Self.name(name, matches: asked) }
        // An exact name first: a bare tag that is also some image's whole name means that image.
        if let exact = entries.first(where: { names($0).contains(asked) }) { return exact }
        let found = entries.filter { names($0).contains(where: matches) }
        var seen = Set<String>()
        let distinct = found.filter { seen.insert(key($0)).inserted }
        guard distinct.count <= 1 else {
            let listed = distinct.flatMap { names($0).filter(matches) }
            throw Diagnostic(
                kind: .invalid, file: path, message: "'\(asked)' names \(distinct.count) images in the archive: \(listed.joined(separator: ", "))",
                hint: "give the whole name with --tag")
        }
        return distinct.first
    }
}
