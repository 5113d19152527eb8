import Foundation
import OCI
import Testing
import ToolboxCore

final class StoreDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)").path
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct DigestTests {
    @Test func knownValues() throws {
        #expect(Digest(of: [UInt8]()).description == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Digest(of: Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var stream = StreamingDigest()
        stream.update(Array("a".utf8))
        stream.update(Array("bc".utf8))
        #expect(stream.finalize() == Digest(of: Array("abc".utf8)))
        #expect(stream.count == 3)
    }

    @Test(arguments: [
        ("sha512:abcd", "unsupported digest \"sha512:abcd\": only sha256:<64 hex digits> is supported"),
        ("sha256:ABC", "invalid digest \"sha256:ABC\": expected sha256: and 64 lowercase hex digits"),
        ("sha256:" + String(repeating: "g", count: 64), "invalid digest \"sha256:\(String(repeating: "g", count: 64))\": expected sha256: and 64 lowercase hex digits"),
    ])
    func rejects(_ c: (String, String)) {
        #expect(throws: Digest.ParseError(description: c.1)) { try Digest(parsing: c.0) }
    }

    @Test func codable() throws {
        let d = Digest(of: Array("x".utf8))
        let json = try JSONEncoder().encode([d])
        #expect(String(decoding: json, as: UTF8.self) == "[\"\(d)\"]")
        #expect(try JSONDecoder().decode([Digest].self, from: json) == [d])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([Digest].self, from: Data("[\"sha256:x\"]".utf8)) }
    }
}

struct ContentStoreTests {
    @Test func storesVerifiedBlobsUnderTheirDigest() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let bytes = Array("{\"schemaVersion\":2}".utf8)
        let digest = try store.store(bytes)
        #expect(store.path(of: digest) == dir.path + "/blobs/sha256/" + digest.hex)
        #expect(store.contains(digest, size: Int64(bytes.count)))
        #expect(!store.contains(digest, size: 1))
        #expect(try store.read(digest) == bytes)
        #expect(try store.verify(digest))
        // Nothing is left in the temporary directory.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tmp").isEmpty)
    }

    /// What a producer writes (tar into a pipe, for img-build; a file here) is hashed as it
    /// comes, adopted under its digest, or discarded when the producer failed.
    @Test func blobsReceivedFromAProducer() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let source = dir.path + "-source"
        try Data(bytes).write(to: URL(fileURLWithPath: source))
        defer { try? FileManager.default.removeItem(atPath: source) }
        func received() throws -> ContentStore.Received {
            let fd = open(source, O_RDONLY)
            defer { close(fd) }
            return try store.receive(from: fd, source: source)
        }
        let first = try received()
        #expect(first.digest == Digest(of: bytes) && first.size == Int64(bytes.count))
        try store.adopt(first)
        #expect(try store.verify(first.digest))
        let again = try received()
        try store.adopt(again)  // already there: kept, the scratch file removed
        let dropped = try received()
        store.discard(dropped)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tmp").isEmpty)
    }

    @Test func mismatchIsRejectedAndNotCached() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let claimed = Digest(of: Array("the real content".utf8))
        #expect(throws: Diagnostic.self) { try store.store(Array("tampered".utf8), expected: claimed) }
        let writer = try store.writer(for: claimed)
        try Array("tampered".utf8).withUnsafeBytes { try writer.write($0) }
        do {
            try writer.commit()
            Issue.record("commit of wrong bytes succeeded")
        } catch {
            #expect(error.message == "blob \(claimed) does not match its digest: received 8 bytes hashing to \(Digest(of: Array("tampered".utf8)))")
        }
        #expect(!store.contains(claimed))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tmp").isEmpty)
    }

    @Test func interruptedWritesResume() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let blob = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let digest = Digest(of: blob)
        let first = try store.writer(for: digest)
        try Array(blob[0..<123_456]).withUnsafeBytes { try first.write($0) }
        first.suspend()
        #expect(!store.contains(digest))
        let second = try store.writer(for: digest)
        #expect(second.offset == 123_456)
        try Array(blob[123_456...]).withUnsafeBytes { try second.write($0) }
        try second.commit()
        #expect(try store.verify(digest))
        // Without resume, a writer starts from zero.
        let other = Digest(of: Array("other".utf8))
        let w1 = try store.writer(for: other)
        try Array("garbage".utf8).withUnsafeBytes { try w1.write($0) }
        w1.suspend()
        let w2 = try store.writer(for: other, resume: false)
        #expect(w2.offset == 0)
        try w2.restart()
        try Array("other".utf8).withUnsafeBytes { try w2.write($0) }
        try w2.commit()
        #expect(try store.read(other) == Array("other".utf8))
    }

    @Test func corruptionOnDiskIsDetected() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let bytes = Array(String(repeating: "layer", count: 1000).utf8)
        let digest = try store.store(bytes)
        var corrupted = bytes
        corrupted[10] ^= 0xff
        try Data(corrupted).write(to: URL(fileURLWithPath: store.path(of: digest)))
        #expect(store.contains(digest, size: Int64(bytes.count)))
        #expect(try store.verify(digest) == false)
        #expect(!store.contains(digest))
        let again = try store.store(bytes)
        try Data(corrupted).write(to: URL(fileURLWithPath: store.path(of: again)))
        #expect(throws: Diagnostic(kind: .invalid, file: store.path(of: digest), message: "cached blob \(digest) was corrupt and has been removed", hint: "pull again to fetch it anew")) {
            try store.read(digest)
        }
        #expect(!store.contains(digest))
    }

    @Test func locksExcludeOtherWriters() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let digest = Digest(of: Array("x".utf8))
        let held = try store.lock(digest)
        #expect(try store.tryLock(digest) == nil)
        held.release()
        let again = try #require(try store.tryLock(digest))
        again.release()
    }

    /// Many threads store the same blob at once: all succeed, one file results.
    @Test func concurrentStoresOfOneBlob() async throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let bytes = Array(String(repeating: "concurrent", count: 50_000).utf8)
        let digests = try await withThrowingTaskGroup(of: Digest.self) { group in
            for _ in 0..<8 { group.addTask { try store.store(bytes) } }
            return try await group.reduce(into: [Digest]()) { $0.append($1) }
        }
        #expect(Set(digests).count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/blobs/sha256").count == 1)
        #expect(try store.verify(digests[0]))
    }

    @Test func tagsResolveOffline() throws {
        let dir = try StoreDirectory()
        let store = try ContentStore(root: dir.path)
        let digest = Digest(of: Array("manifest".utf8))
        #expect(store.resolveTag(registry: "nvcr.io", repository: "nvidia/pytorch", tag: "24.01") == nil)
        try store.recordTag(registry: "nvcr.io", repository: "nvidia/pytorch", tag: "24.01", digest: digest)
        #expect(store.resolveTag(registry: "nvcr.io", repository: "nvidia/pytorch", tag: "24.01") == digest)
        let newer = Digest(of: Array("manifest 2".utf8))
        try store.recordTag(registry: "nvcr.io", repository: "nvidia/pytorch", tag: "24.01", digest: newer)
        #expect(store.resolveTag(registry: "nvcr.io", repository: "nvidia/pytorch", tag: "24.01") == newer)
    }

    @Test func unusableRootIsAClearError() throws {
        let dir = try StoreDirectory()
        try "a file".write(toFile: dir.path, atomically: true, encoding: .utf8)
        #expect(throws: Diagnostic(kind: .output, file: dir.path, message: "exists and is not a directory", hint: "choose another cache directory with --cache")) {
            try ContentStore(root: dir.path)
        }
    }

    @Test func defaultRoot() {
        #expect(ContentStore.defaultRoot(environment: ["TOOLBOX_CACHE": "/c", "HOME": "/h"]) == "/c")
        #expect(ContentStore.defaultRoot(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"]) == "/x/toolbox")
        #expect(ContentStore.defaultRoot(environment: ["HOME": "/h"]) == "/h/.cache/toolbox")
        #expect(ContentStore.defaultRoot(environment: [:]) == nil)
    }
}

struct ImageSpecTests {
    /// A Docker manifest list and an OCI manifest as registries serve them.
    @Test func decodesRegistryDocuments() throws {
        let list = """
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
            {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":529,"digest":"sha256:\(String(repeating: "a", count: 64))","platform":{"architecture":"amd64","os":"linux"}},
            {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":529,"digest":"sha256:\(String(repeating: "b", count: 64))","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}
            """
        let index = try JSONDecoder().decode(Index.self, from: Data(list.utf8))
        #expect(index.manifests.map { $0.platform?.description } == ["linux/amd64", "linux/arm64/v8"])
        let manifest = """
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\(String(repeating: "c", count: 64))","size":7023},
             "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:\(String(repeating: "d", count: 64))","size":32654}]}
            """
        let m = try JSONDecoder().decode(Manifest.self, from: Data(manifest.utf8))
        #expect(m.layers.map(\.size) == [32654])
        #expect(MediaType.layerCompression(m.layers[0].mediaType) == .gzip)
        let config = """
            {"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"WorkingDir":"/w","User":"1000","Volumes":{"/data":{}},"Labels":{"a":"b"}},
             "rootfs":{"type":"layers","diff_ids":["sha256:\(String(repeating: "e", count: 64))"]}}
            """
        let c = try JSONDecoder().decode(ImageConfiguration.self, from: Data(config.utf8))
        #expect(c.config?.Volumes?.keys.sorted() == ["/data"])
        #expect(c.config?.Entrypoint == ["/bin/sh", "-c"])
        // Entrypoint and Cmd as one string (older tools; Docker reads them as a one-element list);
        // null as none; a number is no command.
        let strings = #"{"architecture":"amd64","os":"linux","config":{"Entrypoint":"/bin/sh -c","Cmd":null},"rootfs":{"type":"layers","diff_ids":[]}}"#
        let s = try JSONDecoder().decode(ImageConfiguration.self, from: Data(strings.utf8))
        #expect(s.config?.Entrypoint == ["/bin/sh -c"] && s.config?.Cmd == nil)
        let number = #"{"architecture":"amd64","os":"linux","config":{"Cmd":7},"rootfs":{"type":"layers","diff_ids":[]}}"#
        #expect(throws: (any Error).self) { try JSONDecoder().decode(ImageConfiguration.self, from: Data(number.utf8)) }
    }
}

struct ImageStoreNameTests {
    @Test func namesAsTheReferenceSystem() {
        #expect(ImageStore.fileName(registry: "nvcr.io", repository: "nvidia/pytorch", tag: "24.01-py3", digest: nil, architecture: "amd64")
            == "nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh")
        #expect(ImageStore.fileName(registry: "docker.io", repository: "library/ubuntu", tag: "24.04", digest: nil, architecture: "arm64")
            == "ubuntu+24.04.aarch64.sqsh")
        #expect(ImageStore.fileName(registry: "ghcr.io", repository: "a/b", tag: nil, digest: "sha256:abc", architecture: "amd64")
            == "ghcr.io+a+b+sha256-abc.x86_64.sqsh")
    }

    /// Repositories and tags may be long (255 characters each): the name stays short enough for
    /// its temporary file, `.json` and `.lock`, and different long names stay different.
    @Test func longNamesAreShortenedWithTheirHash() {
        let repository = "team/" + String(repeating: "a", count: 214)
        let name = ImageStore.fileName(registry: "127.0.0.1:5000", repository: repository, tag: "t", digest: nil, architecture: "amd64")
        #expect(name.utf8.count <= ImageStore.longestName + ".x86_64.sqsh".count)
        #expect(name.hasPrefix("127.0.0.1:5000+team+aaaa") && name.hasSuffix(".x86_64.sqsh"))
        #expect(("." + name + ".tmp.4294967295").utf8.count <= 255)
        let other = ImageStore.fileName(registry: "127.0.0.1:5000", repository: repository, tag: "u", digest: nil, architecture: "amd64")
        #expect(other != name && other.utf8.count == name.utf8.count)
        // Multi-byte characters are not cut in half.
        let wide = ImageStore.fileName(registry: "r", repository: String(repeating: "é", count: 150), tag: "t", digest: nil, architecture: "amd64")
        #expect(wide.utf8.count <= ImageStore.longestName + ".x86_64.sqsh".count && !wide.contains("\u{FFFD}"))
        // A name of exactly the longest length is kept.
        let exact = String(repeating: "b", count: ImageStore.longestName - "r+".count - "+t".count)
        #expect(ImageStore.fileName(registry: "r", repository: exact, tag: "t", digest: nil, architecture: "amd64") == "r+\(exact)+t.x86_64.sqsh")
    }
}
