#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Foundation
import OCI
import ToolboxCore
import ToolboxModel

/// Pulls an image into the content store: resolves the tag, chooses the platform, fetches the
/// config and the missing layers in parallel, and describes the result.
public final class Puller {
    public struct Options: Sendable {
        public var registry = RegistryClient.Options()
        public var platform: Platform
        /// The platform was asked for (--arch): a single-platform image for another one is an
        /// error, not a warning.
        public var platformAsked = false
        public var offline = false
        /// Re-hash the layers already in the cache; corrupt ones are removed and fetched again.
        public var verify = false
        /// Messages for people: one line per layer.
        public var progress: (@Sendable (String) -> Void)?
        /// A live progress bar on stderr (a terminal) instead of the lines.
        public var progressBar = false
        /// Warnings for people (shown also when the progress is not).
        public var warning: (@Sendable (String) -> Void)?

        public init(platform: Platform) {
            self.platform = platform
        }
    }

    public let store: ContentStore
    public let options: Options
    let credentials: CredentialStore

    public init(store: ContentStore, credentials: CredentialStore, options: Options) {
        self.store = store
        self.credentials = credentials
        self.options = options
    }

    /// The platform of this machine (`uname -m` in OCI's names).
    public static func hostPlatform() -> Platform {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: &name.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return platform(architecture: machine) ?? Platform(architecture: machine)
    }

    /// OCI architecture names for `uname -m` and Debian names: x86_64/amd64, aarch64/arm64, ...
    /// The platform an `--arch` value names (`linux/` before it is allowed); nil when it names none.
    public static func platform(architecture given: String) -> Platform? {
        let architecture = given.hasPrefix("linux/") ? String(given.dropFirst("linux/".count)) : given
        switch architecture {
        case "x86_64", "amd64": return Platform(architecture: "amd64")
        case "aarch64", "arm64": return Platform(architecture: "arm64")
        case "ppc64le": return Platform(architecture: "ppc64le")
        case "s390x": return Platform(architecture: "s390x")
        case "riscv64": return Platform(architecture: "riscv64")
        case "armv7l", "armhf", "arm": return Platform(architecture: "arm", variant: "v7")
        case "i386", "i686", "386": return Platform(architecture: "386")
        default:
            // OCI architecture and variant values: lowercase letters, digits, '_' (GOARCH names).
            let parts = architecture.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            let word = { (text: String) in !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") } }
            // Only Linux images run here: an operating system named first (windows/amd64) is no
            // architecture.
            guard parts.count <= 2, parts.allSatisfy(word), !["windows", "darwin", "freebsd"].contains(parts[0]) else { return nil }
            return Platform(architecture: parts[0], variant: parts.count > 1 ? parts[1] : nil)
        }
    }

    public func pull(_ reference: ImageReference) throws(Diagnostic) -> PullResult {
        let client = RegistryClient(
            registry: reference.registry, repository: reference.repository, user: reference.user, credentials: credentials,
            options: options.registry)
        client.onRetry = options.progress
        let what = reference.digest ?? reference.tag ?? "latest"

        // 1. The top-level manifest (or index), by digest or by tag.
        let topDigest: Digest
        let topBytes: [UInt8]
        if let pinned = reference.digest, let digest = try? Digest(parsing: pinned), store.contains(digest) {
            // Content by digest never changes: the cached copy is the answer, online or not.
            topDigest = digest
            topBytes = try store.read(digest)
        } else if options.offline {
            if let pinned = reference.digest {
                topDigest = try Self.digest(pinned)
            } else if let tag = reference.tag, let recorded = store.resolveTag(registry: reference.registry, repository: reference.repository, tag: tag) {
                topDigest = recorded
            } else {
                throw Diagnostic(kind: .notFound, message: "\(reference.reference) is not in the cache (\(store.root))", hint: "pull it once without --offline")
            }
            topBytes = try offlineBlob(topDigest, label: reference.reference)
        } else {
            let bytes: [UInt8]
            do {
                (bytes, _) = try client.manifest(what)
            } catch {
                // The registry out of reach (down, rate-limited): a tag pulled before is served from
                // the cache, as the reference system prefers a cached image to a new pull.
                guard error.kind == .network, reference.digest == nil, let tag = reference.tag,
                    let recorded = store.resolveTag(registry: reference.registry, repository: reference.repository, tag: tag)
                else { throw error }
                var offline = options
                offline.offline = true
                guard let cached = try? Puller(store: store, credentials: credentials, options: offline).pull(reference) else { throw error }
                options.warning?("\(error.message); using \(reference.reference) as last pulled (\(recorded)) from the cache")
                return cached
            }
            topDigest = Digest(of: bytes)
            if let pinned = reference.digest, pinned != topDigest.description {
                throw Diagnostic(kind: .invalid, message: "the registry served manifest \(topDigest) for \(reference.reference)", hint: "the registry or a proxy served other content than the digest names")
            }
            try store.store(bytes, expected: topDigest)
            topBytes = bytes
        }

        let source = RegistrySource(puller: self, client: client, label: reference.reference)
        let result = try resolve(
            top: topDigest, bytes: topBytes, source: source,
            name: (reference.reference, reference.registry, reference.repository, reference.tag))
        // The tag is recorded once everything it names is in the cache: a pull that failed halfway
        // leaves an offline pull of the tag with the last complete image.
        if !options.offline, reference.digest == nil, let tag = reference.tag {
            // The image is in the cache whatever happens here: a tag that cannot be recorded (a
            // cache another user shares read-only) costs only offline pulls of the tag.
            do {
                try store.recordTag(registry: reference.registry, repository: reference.repository, tag: tag, digest: topDigest)
            } catch {
                options.warning?("\(error.file.map { "\($0): " } ?? "")\(error.message); an --offline pull of \(reference.reference) will not find it")
            }
        }
        return result
    }

    /// Where manifests, configs and layers come from once the top-level manifest is known.
    protocol Source {
        /// A platform's manifest, verified and stored.
        func manifest(_ digest: Digest) throws(Diagnostic) -> [UInt8]
        /// The image config, verified and stored.
        func config(_ digest: Digest) throws(Diagnostic) -> [UInt8]
        /// Layers not in the cache, fetched into it.
        func fetchLayers(_ layers: [Descriptor]) throws(Diagnostic)
    }

    /// From the top-level manifest or index to the pull result: platform, manifest, config, layers.
    func resolve(
        top topDigest: Digest, bytes topBytes: [UInt8], source: some Source,
        name: (reference: String, registry: String, repository: String, tag: String?)
    ) throws(Diagnostic) -> PullResult {
        let label = name.reference
        // 2. An index: choose the platform's manifest.
        var indexDigest: Digest?
        var manifestDigest = topDigest
        var manifestBytes = topBytes
        var mediaType = try Self.mediaType(of: topBytes, label: label)
        // An index may name another index (an OCI layout's index.json names the image's index):
        // followed a few levels down.
        var depth = 0
        while MediaType.indexes.contains(mediaType) {
            depth += 1
            if depth > 4 {
                throw Diagnostic(
                    kind: .invalid, message: "the image indexes of \(label) are nested more than 4 deep",
                    hint: "an index should name the platforms' manifests (or one more index)")
            }
            let index: Index
            do {
                index = try JSONDecoder().decode(Index.self, from: Data(manifestBytes))
            } catch {
                throw Diagnostic(
                    kind: .invalid, message: "malformed image index for \(label): \(describeDecodingError(error))",
                    hint: "the registry, the layout or the archive holds a broken index; push or write the image again")
            }
            let chosen = try choose(from: index, label: label)
            indexDigest = indexDigest ?? topDigest
            manifestDigest = chosen.digest
            manifestBytes = try cachedOrFetched(chosen.digest) { () throws(Diagnostic) in try source.manifest(chosen.digest) }
            mediaType = try Self.mediaType(of: manifestBytes, label: label)
        }
        guard MediaType.manifests.contains(mediaType) else {
            if mediaType.hasPrefix("application/vnd.docker.distribution.manifest.v1") {
                throw Diagnostic(
                    kind: .invalid, message: "\(label) has a Docker schema 1 manifest (\(mediaType)), which Docker itself no longer pulls",
                    hint: "push the image again with a current tool (skopeo copy, docker, podman write schema 2 or OCI manifests)")
            }
            throw Diagnostic(
                kind: .invalid, message: "unsupported manifest media type \"\(mediaType)\" for \(label)",
                hint: "supported: \(MediaType.acceptedManifests.joined(separator: ", "))")
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(manifestBytes))
        } catch {
            throw Diagnostic(
                kind: .invalid, message: "malformed image manifest for \(label): \(describeDecodingError(error))",
                hint: "the registry, the layout or the archive holds a broken manifest; push or write the image again")
        }
        for layer in manifest.layers where MediaType.layerCompression(layer.mediaType) == nil {
            throw Diagnostic(kind: .invalid, message: "unsupported layer media type \"\(layer.mediaType)\" in \(label)", hint: "layers must be tar, tar+gzip or tar+zstd")
        }

        // 3. The config.
        let configBytes = try cachedOrFetched(manifest.config.digest, size: manifest.config.size) { () throws(Diagnostic) in
            try source.config(manifest.config.digest)
        }
        if Int64(configBytes.count) != manifest.config.size {
            throw Diagnostic(
                kind: .invalid, message: "the config of \(label) has \(configBytes.count) bytes; its manifest declares \(manifest.config.size)",
                hint: "the image's manifest and config do not agree (a broken or hostile registry or image)")
        }
        let config: ImageConfiguration
        do {
            config = try JSONDecoder().decode(ImageConfiguration.self, from: Data(configBytes))
        } catch {
            throw Diagnostic(kind: .invalid, message: "malformed image config for \(label): \(describeDecodingError(error))")
        }

        // A single-platform image says its platform in its config only.
        if indexDigest == nil, let architecture = config.architecture {
            let found = Platform(os: config.os ?? "linux", architecture: architecture, variant: config.variant)
            let wanted = options.platform
            if found.os != wanted.os || found.architecture != wanted.architecture {
                if options.platformAsked {
                    throw Diagnostic(
                        kind: .notFound, message: "\(label) is an image for \(found) only, not for \(wanted)",
                        hint: "leave out --arch, or pull an image built for \(wanted)")
                }
                options.warning?("\(label) is an image for \(found), not for this machine (\(wanted)): its programs may not run here")
            }
        } else if let architecture = config.architecture, architecture != options.platform.architecture {
            // Chosen from an index for this platform, but its config says another: the index is
            // wrong (a mislabelled multi-platform push); said, as the programs may not run.
            options.warning?(
                "\(label): the index lists this manifest for \(options.platform), but its config says \(config.os ?? "linux")/\(architecture): its programs may not run here")
        }

        // 4. The layers.
        if options.verify {
            for layer in manifest.layers where store.contains(layer.digest) {
                if try !store.verify(layer.digest) {
                    options.progress?("\(layer.digest) was corrupt in the cache; fetching it again")
                }
            }
        }
        // A cached layer changed since it was verified (same size, new bytes) is checked again
        // and, corrupt, fetched again.
        var missing: [Descriptor] = []
        for layer in manifest.layers {
            if store.contains(layer.digest, size: layer.size) {
                if try store.intact(layer.digest, size: layer.size) { continue }
                options.progress?("\(layer.digest) was changed in the cache since it was verified, and is corrupt; fetching it again")
            }
            missing.append(layer)
        }
        if !missing.isEmpty {
            try source.fetchLayers(missing)
        } else {
            options.progress?("all \(manifest.layers.count) layers of \(label) found in the cache")
        }

        let runtime = config.config ?? ImageConfiguration.Runtime()
        return PullResult(
            reference: name.reference, registry: name.registry, repository: name.repository, tag: name.tag,
            manifestDigest: manifestDigest.description, indexDigest: indexDigest?.description, mediaType: mediaType,
            platform: .init(os: config.os ?? options.platform.os, architecture: config.architecture ?? options.platform.architecture, variant: config.variant),
            cache: store.root,
            config: .init(
                digest: manifest.config.digest.description, path: store.path(of: manifest.config.digest), Env: runtime.Env ?? [],
                Entrypoint: runtime.Entrypoint, Cmd: runtime.Cmd, WorkingDir: runtime.WorkingDir, User: runtime.User,
                Volumes: (runtime.Volumes ?? [:]).keys.sorted(), Labels: runtime.Labels ?? [:]),
            layers: manifest.layers.map { .init(digest: $0.digest.description, mediaType: $0.mediaType, size: $0.size, path: store.path(of: $0.digest)) })
    }

    /// A small blob (manifest, config) from the cache, else from `fetch`; one that is corrupt in
    /// the cache is removed by the read and fetched again (offline, the error stands).
    func cachedOrFetched(_ digest: Digest, size: Int64? = nil, fetch: () throws(Diagnostic) -> [UInt8]) throws(Diagnostic) -> [UInt8] {
        guard store.contains(digest, size: size) else { return try fetch() }
        do {
            return try store.read(digest)
        } catch {
            if options.offline || store.contains(digest) { throw error }
            options.progress?("\(digest) was corrupt in the cache; fetching it again")
            return try fetch()
        }
    }

    func offlineBlob(_ digest: Digest, label: String) throws(Diagnostic) -> [UInt8] {
        guard store.contains(digest) else {
            throw Diagnostic(kind: .notFound, message: "\(label): blob \(digest) is not in the cache (\(store.root))", hint: "pull it once without --offline")
        }
        return try store.read(digest)
    }

    /// The manifest of the requested platform; an error lists the platforms there are.
    func choose(from index: Index, label: String) throws(Diagnostic) -> Descriptor {
        let wanted = options.platform
        let candidates = index.manifests.filter { d in
            guard let p = d.platform else { return false }
            return p.os == wanted.os && p.architecture == wanted.architecture
        }
        if let variant = wanted.variant {
            // arm64 without a variant is v8 (as containerd reads it); another variant than the
            // one asked for is not a match.
            let implied: (Descriptor) -> String? = { d in d.platform?.variant ?? (d.platform?.architecture == "arm64" ? "v8" : nil) }
            if let exact = candidates.first(where: { implied($0) == variant }) { return exact }
            if !options.platformAsked, let first = candidates.first { return first }
        } else if let first = candidates.first(where: { $0.platform?.variant == nil || $0.platform?.architecture == "arm64" }) ?? candidates.first {
            return first
        }
        // No platform of its own: an index that names the platforms' manifests itself.
        if let nested = index.manifests.first(where: { $0.platform == nil && MediaType.indexes.contains($0.mediaType) }) { return nested }
        let available = index.manifests.compactMap { $0.platform?.description }.filter { !$0.hasPrefix("unknown") }
        throw Diagnostic(
            kind: .notFound, message: "\(label) has no image for \(wanted); it has: \(available.isEmpty ? "no platforms listed" : available.joined(separator: ", "))",
            hint: "choose one with --arch (e.g. --arch \(index.manifests.compactMap { $0.platform?.architecture }.first ?? "amd64"))")
    }

    static func digest(_ text: String) throws(Diagnostic) -> Digest {
        do {
            return try Digest(parsing: text)
        } catch {
            throw Diagnostic(kind: .invalid, message: error.description)
        }
    }

    /// The media type a manifest declares (its `mediaType` field, or its shape when absent).
    static func mediaType(of bytes: [UInt8], label: String) throws(Diagnostic) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw Diagnostic(kind: .invalid, message: "the manifest of \(label) is not valid JSON", hint: "the registry answered with something that is not a manifest")
        }
        if let declared = object["mediaType"] as? String { return declared }
        if object["manifests"] != nil { return MediaType.ociIndex }
        if object["layers"] != nil { return MediaType.ociManifest }
        if (object["schemaVersion"] as? Int) == 1 { return "application/vnd.docker.distribution.manifest.v1+prettyjws" }
        return "unknown"
    }
}

/// Blobs from a registry (or, offline, from the cache alone).
struct RegistrySource: Puller.Source {
    let puller: Puller
    let client: RegistryClient
    let label: String

    func manifest(_ digest: Digest) throws(Diagnostic) -> [UInt8] {
        if puller.options.offline { return try puller.offlineBlob(digest, label: label) }
        let (bytes, _) = try client.manifest(digest.description)
        guard Digest(of: bytes) == digest else {
            throw Diagnostic(kind: .invalid, message: "the registry served a manifest that does not match \(digest)")
        }
        try puller.store.store(bytes, expected: digest)
        return bytes
    }

    func config(_ digest: Digest) throws(Diagnostic) -> [UInt8] {
        if puller.options.offline { return try puller.offlineBlob(digest, label: label) }
        // Under the blob's lock, as the layers: one download across the pulls that run at once.
        var fetched: [UInt8]?
        try puller.store.ingest(digest, size: nil) { write throws(Diagnostic) in
            let bytes = try client.smallBlob(digest)
            fetched = bytes
            try bytes.withUnsafeBytes { buffer in Result { () throws(Diagnostic) in try write(buffer) } }.get()
        }
        if let fetched { return fetched }
        return try puller.store.read(digest)
    }

    func fetchLayers(_ layers: [Descriptor]) throws(Diagnostic) {
        if puller.options.offline {
            let listed = layers.count == 1 ? "layer \(layers[0].digest)" : "\(layers.count) layers (\(layers[0].digest), ...)"
            throw Diagnostic(
                kind: .notFound, message: "\(listed) of \(label) \(layers.count == 1 ? "is" : "are") not in the cache (\(puller.store.root))",
                hint: "pull it once without --offline")
        }
        let options = puller.options
        let download = LayerDownload(client: client, store: puller.store, progress: options.progressBar ? nil : options.progress)
        if options.progressBar { download.bar = ProgressBar(label: label, total: layers.reduce(0) { $0 + $1.size }) }
        try download.run(layers)
    }
}

/// Downloads layers in parallel into the store: streaming SHA-256, retries with backoff,
/// resumption with Range, token renewal, and one download per blob across processes (locks).
final class LayerDownload {
    let client: RegistryClient
    let store: ContentStore
    let progress: (@Sendable (String) -> Void)?
    var failure: Diagnostic?
    var locks: [Digest: FileLock] = [:]
    var writers: [Int: BlobWriter] = [:]
    var corruptRetries: Set<Digest> = []
    var done = 0
    var total = 0
    var bar: ProgressBar?
    /// The attempt in flight for each layer, for the progress bar.
    var inFlight: [Int: HTTPTransfer] = [:]
    var completedBytes: Int64 = 0

    init(client: RegistryClient, store: ContentStore, progress: (@Sendable (String) -> Void)?) {
        self.client = client
        self.store = store
        self.progress = progress
    }

    func run(_ layers: [Descriptor]) throws(Diagnostic) {
        total = layers.count
        defer { bar?.finish(layers: done, of: total) }
        var mine: [Descriptor] = []
        var others: [Descriptor] = []
        for layer in layers {
            if let lock = try store.tryLock(layer.digest) {
                locks[layer.digest] = lock
                mine.append(layer)
            } else {
                others.append(layer)
            }
        }
        defer { for lock in locks.values { lock.release() } }
        try download(mine)
        // Release ours before waiting for another process's: holding one lock while waiting for
        // another would deadlock two pulls that each took a different blob first.
        for lock in locks.values { lock.release() }
        locks.removeAll()
        // Blobs another process was fetching: wait for it, then fetch what it did not finish.
        for layer in others {
            // Said once per blob that is not free at once (a stopped pull holds its lock until it
            // is killed or continued: the wait is otherwise silent).
            var lock = try store.tryLock(layer.digest)
            if lock == nil {
                progress?("\(layer.digest): waiting for another img-pull that is fetching it")
                lock = try store.lock(layer.digest)
            }
            defer { lock?.release() }
            if store.contains(layer.digest, size: layer.size) {
                done += 1
                progress?("\(layer.digest) fetched by another process (\(done)/\(total))")
            } else {
                try download([layer])
            }
        }
    }

    func download(_ layers: [Descriptor]) throws(Diagnostic) {
        var transfers: [HTTPTransfer] = []
        for (i, layer) in layers.enumerated() {
            // Taken under the lock: maybe fetched meanwhile.
            if store.contains(layer.digest, size: layer.size) {
                done += 1
                continue
            }
            var writer = try store.writer(for: layer.digest, resume: true, expectedSize: layer.size)
            if writer.offset == layer.size {
                // An earlier pull received every byte but stopped before the rename.
                do {
                    try writer.commit()
                    done += 1
                    continue
                } catch {
                    writer = try store.writer(for: layer.digest, resume: false, expectedSize: layer.size)
                }
            }
            if writer.offset > layer.size { try writer.restart() }
            writers[i] = writer
            transfers.append(request(for: layer, index: i, writer: writer))
        }
        let byIndex = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($0.offset, $0.element) })
        let tick: (() -> Void)? = bar.map { bar in
            { [unowned self] in
                let inFlight = self.inFlight.values.reduce(Int64(0)) { $0 + $1.rangeStart + $1.received }
                bar.update(bytes: self.completedBytes + inFlight, layers: self.done, of: self.total)
            }
        }
        client.engine.run(transfers, tick: tick) { transfer in
            guard failure == nil, let layer = byIndex[transfer.tag], let writer = writers[transfer.tag] else { return nil }
            return step(transfer, layer: layer, writer: writer)
        }
        // Partial files are kept for the next pull to resume, unless the disk is full.
        let diskFull = failure.map(ContentStore.isDiskFull) ?? false
        for writer in writers.values {
            if diskFull { writer.discard() } else { writer.suspend() }
        }
        writers.removeAll()
        if let failure { throw failure }
    }

    func request(for layer: Descriptor, index: Int, writer: BlobWriter) -> HTTPTransfer {
        let transfer = HTTPTransfer(url: client.url("blobs/\(layer.digest)"), sink: .blob(writer))
        transfer.tag = index
        inFlight[index] = transfer
        transfer.rangeStart = writer.offset
        if let authorization = client.authorization { transfer.headers = [authorization] }
        return transfer
    }

    /// What to do after one attempt at one layer.
    func step(_ transfer: HTTPTransfer, layer: Descriptor, writer: BlobWriter) -> (HTTPTransfer, Double)? {
        func again(_ delay: Double, writer: BlobWriter = writer) -> (HTTPTransfer, Double) {
            let next = request(for: layer, index: transfer.tag, writer: writer)
            next.attempt = transfer.attempt + 1
            return (next, delay)
        }
        if let error = transfer.sinkError {
            failure = error
            return nil
        }
        let complete = (transfer.status == 200 || transfer.status == 206) && transfer.curlCode == CURLE_OK
        if complete {
            do {
                try writer.commit()
                writers[transfer.tag] = nil
                inFlight[transfer.tag] = nil
                done += 1
                completedBytes += layer.size
                progress?("\(layer.digest) \(Self.size(layer.size)) (\(done)/\(total))")
                return nil
            } catch {
                // Corrupt bytes: try once more from the start, then give up with the error.
                if corruptRetries.insert(layer.digest).inserted, let fresh = try? store.writer(for: layer.digest, resume: false, expectedSize: layer.size) {
                    writers[transfer.tag] = fresh
                    return again(0, writer: fresh)
                }
                writers[transfer.tag] = nil
                failure = error
                return nil
            }
        }
        if transfer.failedForGood {
            failure = client.unreachable(transfer)
            return nil
        }
        if transfer.status == 401 || transfer.status == 403, !client.answeredByRegistry(transfer) {
            // The storage the registry redirected the blob to: nothing to authenticate there.
            failure = client.httpError(transfer, what: "blob \(layer.digest)")
            return nil
        }
        if transfer.status == 401 {
            do {
                // A token that expired during the pull: renewed, without using up a retry.
                if transfer.renewals < RegistryClient.maximumRenewals, try client.authenticate(transfer) {
                    let next = request(for: layer, index: transfer.tag, writer: writer)
                    next.attempt = transfer.attempt
                    next.renewals = transfer.renewals + 1
                    return (next, 0)
                }
            } catch {
                failure = error
                return nil
            }
            failure = client.authenticationError(transfer)
            return nil
        }
        if transfer.status == 416 {
            // The partial file is longer than the blob: start over.
            try? writer.restart()
            return again(0)
        }
        if RegistryClient.isTransient(transfer) || ((transfer.status == 200 || transfer.status == 206) && transfer.curlCode != CURLE_OK) {
            guard transfer.attempt <= client.options.retries else {
                failure = transfer.status == 0 || transfer.failedToConnect
                    ? Diagnostic(kind: .network, message: "download of \(layer.digest) from \(client.registry) failed after \(transfer.attempt) attempts: \(transfer.transportError)", hint: "the partial download is kept; run the pull again to resume it")
                    : client.httpError(transfer, what: "blob \(layer.digest)")
                return nil
            }
            let wait = client.delay(attempt: transfer.attempt, transfer: transfer)
            if transfer.status == 200 || transfer.status == 206, transfer.received > 0 {
                progress?("\(layer.digest) interrupted after \(writer.offset) bytes; resuming (attempt \(transfer.attempt + 1))")
            } else if transfer.status >= 400 {
                progress?("\(layer.digest): the registry answered \(transfer.status); trying again in \(String(format: "%.1f", wait)) s (attempt \(transfer.attempt + 1))")
            }
            return again(wait)
        }
        failure = client.httpError(transfer, what: "blob \(layer.digest)")
        return nil
    }

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}

/// A one-line live progress bar on stderr, redrawn at most ten times a second.
final class ProgressBar {
    let label: String
    let total: Int64
    let start = HTTPEngine.now()
    var lastDraw = 0.0
    var lastBytes: Int64 = 0

    init(label: String, total: Int64) {
        self.label = label
        self.total = max(total, 1)
    }

    func update(bytes: Int64, layers: Int, of count: Int, force: Bool = false) {
        lastBytes = bytes
        let now = HTTPEngine.now()
        guard force || now - lastDraw >= 0.1 else { return }
        lastDraw = now
        let fraction = min(1, Double(bytes) / Double(total))
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" + String(repeating: " ", count: width - filled - 1) : "")
        let rate = Double(bytes) / max(0.001, now - start)
        let line = "\r\(label) [\(bar)] \(LayerDownload.size(bytes))/\(LayerDownload.size(total)) \(LayerDownload.size(Int64(rate)))/s \(layers)/\(count) layers\u{1B}[K"
        StandardStreams.writeError(line)
    }

    func finish(layers: Int, of count: Int) {
        update(bytes: layers == count ? total : lastBytes, layers: layers, of: count, force: true)
        StandardStreams.writeError("\n")
    }
}
