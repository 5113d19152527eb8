#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ToolboxCore

/// The content-addressed blob cache: `<root>/blobs/sha256/<hex>`, shared by every pull of every
/// image, by many processes and by the users of a group.
///
/// A blob appears under its final name only complete and verified: it is written to
/// `<root>/tmp/<hex>.partial` (kept for resumption if the transfer breaks), hashed while it is
/// written, synced, and renamed into place. Writers of one blob serialise on `<root>/locks/<hex>`
/// (flock), so a blob is downloaded once however many pulls want it. Tags are recorded under
/// `<root>/refs/<registry>/<repository>/@tags/<tag>` so that an offline pull of a tag resolves
/// (`@` is in no repository name: `a/b`'s tags never take the place of repository `a/b/t`).
///
/// Sharing with a group: create the root with the group and mode 2775 (setgid); the directories
/// made below inherit the group, and while the root is group-writable, what this process creates
/// is group-writable too, whatever its umask (an umask of 022 would lock the others out).
public final class ContentStore: Sendable {
    public let root: String
    let blobs: String
    /// Files being written (partial blobs), also other stages' scratch files: same file system as
    /// the blobs.
    public let temporary: String
    let locks: String
    let refs: String

    /// `$TOOLBOX_CACHE`, else `$XDG_CACHE_HOME/toolbox`, else `$HOME/.cache/toolbox`.
    public static func defaultRoot(environment: [String: String]) -> String? {
        if let dir = environment["TOOLBOX_CACHE"], !dir.isEmpty { return dir }
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return xdg + "/toolbox" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.cache/toolbox" }
        return nil
    }

    public init(root: String) throws(Diagnostic) {
        self.root = root
        blobs = root + "/blobs/sha256"
        temporary = root + "/tmp"
        locks = root + "/locks"
        refs = root + "/refs"
        try Self.makeParents(of: root)
        try Self.makeDirectory(root)
        Self.shareWithGroup(root)
        for dir in [root + "/blobs", blobs, temporary, locks, refs] {
            try Self.makeDirectory(dir)
        }
    }

    /// In a directory its group may write to (a cache or image store shared by a group, mode
    /// 2775), what this process creates is for the group too: readable, writable and (for
    /// directories) searchable by it, whatever the user's umask (077 would shut the others out).
    public static func shareWithGroup(_ directory: String) {
        var info = stat()
        if stat(directory, &info) == 0 && info.st_mode & S_IWGRP != 0 {
            let mask = umask(0)
            umask(mask & ~S_IRWXG)
        }
    }

    /// The missing directories above the cache (a new user's ~/.cache), private (0700) as XDG
    /// wants them.
    static func makeParents(of path: String) throws(Diagnostic) {
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        guard !parent.isEmpty, access(parent, F_OK) != 0 else { return }
        try makeParents(of: parent)
        if mkdir(parent, 0o700) != 0 && errno != EEXIST {
            let reason = String(cString: strerror(errno))
            throw Diagnostic(kind: .output, file: parent, message: "cannot create the cache directory: \(reason)", hint: "choose a writable cache directory with --cache or TOOLBOX_CACHE")
        }
    }

    static func makeDirectory(_ path: String) throws(Diagnostic) {
        if mkdir(path, 0o2775) == 0 || errno == EEXIST {
            var info = stat()
            if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { return }
            throw Diagnostic(kind: .output, file: path, message: "exists and is not a directory", hint: "choose another cache directory with --cache")
        }
        let reason = String(cString: strerror(errno))
        throw Diagnostic(kind: .output, file: path, message: "cannot create the cache directory: \(reason)", hint: "choose a writable cache directory with --cache or TOOLBOX_CACHE")
    }

    public func path(of digest: Digest) -> String { blobs + "/" + digest.hex }

    /// Whether a complete blob is present: a regular file of the expected size (when given). The
    /// bytes are verified as they are written; `verify` checks them again.
    public func contains(_ digest: Digest, size: Int64? = nil) -> Bool {
        var info = stat()
        guard stat(path(of: digest), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
        if let size { return Int64(info.st_size) == size }
        return true
    }

    /// Hashes a stored blob again; a blob whose bytes do not match its name is removed (it will be
    /// fetched again) and false returned. A good one is sealed (see `seal`).
    public func verify(_ digest: Digest) throws(Diagnostic) -> Bool {
        let file = path(of: digest)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return false }
            throw Diagnostic(kind: .unreadable, file: file, message: "cannot open cached blob: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        if try StreamingDigest.of(fd, path: file) == digest {
            Self.seal(file)
            return true
        }
        unlink(file)
        return false
    }

    /// Whether a stored blob is whole and unchanged since it was verified, without hashing it
    /// again on every use: its size, and its seal. One changed since (a write moves its
    /// modification time) or never sealed (an older cache) is hashed again: a corrupt one is
    /// removed, to be fetched again, and false returned; a good one is sealed. Where the file
    /// system keeps no user.* attributes, the size alone decides, as before.
    public func intact(_ digest: Digest, size: Int64) throws(Diagnostic) -> Bool {
        guard contains(digest, size: size) else { return false }
        switch Self.sealState(path(of: digest)) {
        case .intact, .unsupported: return true
        case .changed, .unsealed: return try verify(digest)
        }
    }

    public enum SealState: Sendable { case intact, changed, unsealed, unsupported }

    /// The extended attribute that records the size and modification time a blob had when its
    /// bytes were last checked against its digest.
    static let sealAttribute = "user.toolbox.verified"

    static func sealValue(_ info: stat) -> String {
        "\(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }

    /// Records that a blob's bytes were checked now (best effort: a file system without user.*
    /// attributes, or a file this user may not write, keeps none).
    public static func seal(_ path: String) {
        var info = stat()
        guard stat(path, &info) == 0, let setxattr = Xattr.set else { return }
        _ = sealValue(info).withCString { setxattr(path, sealAttribute, $0, strlen($0), 0) }
    }

    /// Whether a blob is as it was when it was sealed.
    public static func sealState(_ path: String) -> SealState {
        var info = stat()
        guard stat(path, &info) == 0 else { return .unsealed }  // no file: nothing to compare (said where it is read)
        guard let getxattr = Xattr.get else { return .unsupported }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { getxattr(path, sealAttribute, $0.baseAddress, $0.count) }
        if count < 0 { return errno == ENODATA ? .unsealed : .unsupported }
        return String(decoding: buffer[0..<count], as: UTF8.self) == sealValue(info) ? .intact : .changed
    }

    /// glibc's getxattr and setxattr, which the Glibc module does not import (sys/xattr.h):
    /// looked up once in the process's own libc.
    enum Xattr {
        typealias Get = @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?, Int) -> Int
        typealias Set = @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeRawPointer?, Int, Int32) -> Int32
        static let get: Get? = lookup("getxattr").map { unsafeBitCast($0, to: Get.self) }
        static let set: Set? = lookup("setxattr").map { unsafeBitCast($0, to: Set.self) }

        static func lookup(_ name: String) -> UnsafeMutableRawPointer? {
            guard let process = dlopen(nil, RTLD_NOW) else { return nil }
            return dlsym(process, name)
        }
    }

    /// Reads a small blob (manifest, index, config) and checks its digest.
    public func read(_ digest: Digest, limit: Int = 16 << 20) throws(Diagnostic) -> [UInt8] {
        let file = path(of: digest)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw Diagnostic(kind: .notFound, file: file, message: "blob \(digest) is not in the cache") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        try FileReader.stream(fd, path: file) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in
            bytes += chunk
            if bytes.count > limit { throw Diagnostic(kind: .invalid, file: file, message: "blob \(digest) is larger than \(limit) bytes") }
        }
        guard Digest(of: bytes) == digest else {
            unlink(file)
            throw Diagnostic(kind: .invalid, file: file, message: "cached blob \(digest) was corrupt and has been removed", hint: "pull again to fetch it anew")
        }
        return bytes
    }

    /// Stores bytes that are all in memory (manifests, configs). With `expected`, the bytes must
    /// hash to it.
    @discardableResult
    public func store(_ bytes: [UInt8], expected: Digest? = nil) throws(Diagnostic) -> Digest {
        let digest = Digest(of: bytes)
        if let expected, expected != digest {
            throw Diagnostic(kind: .invalid, message: "content does not match its digest: expected \(expected), got \(digest)")
        }
        if contains(digest, size: Int64(bytes.count)) { return digest }
        try ingest(digest, size: Int64(bytes.count)) { write throws(Diagnostic) in
            try bytes.withUnsafeBytes { buffer in Result { () throws(Diagnostic) in try write(buffer) } }.get()
        }
        return digest
    }

    /// Stores a blob whose bytes `fill` produces (streamed from a file or an archive), under the
    /// blob's lock; nothing happens when it is already there. A blob that does not match its
    /// digest is not stored.
    /// `damagedHint` replaces the hint of a blob that does not match its digest or size (which
    /// says a registry served it) where the bytes come from elsewhere (a layout, an archive).
    public func ingest(
        _ digest: Digest, size: Int64?, damagedHint: String? = nil,
        fill: (_ write: (UnsafeRawBufferPointer) throws(Diagnostic) -> Void) throws(Diagnostic) -> Void
    ) throws(Diagnostic) {
        let lock = try self.lock(digest)
        defer { lock.release() }
        if contains(digest, size: size) { return }
        let writer = try BlobWriter(store: self, digest: digest, resume: false, expectedSize: size)
        writer.damagedHint = damagedHint
        do {
            try fill { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in try writer.write(chunk) }
        } catch {
            writer.discard()
            throw error
        }
        try writer.commit()
    }

    /// A blob read from a producer (a pipe) into a scratch file of the cache, hashed on the way:
    /// `adopt` puts it in place under its digest; a producer that failed leaves it to `discard`.
    public struct Received: Sendable {
        public let file: String
        public let digest: Digest
        public let size: Int64
    }

    /// Reads `fd` to its end into a scratch file (`source` names the producer in messages).
    public func receive(from fd: Int32, source: String) throws(Diagnostic) -> Received {
        let file = temporary + "/received.\(getpid()).partial"
        let out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o664)
        guard out >= 0 else { throw Self.writeError(errno, path: file) }
        var hasher = StreamingDigest()
        do throws(Diagnostic) {
            try FileReader.stream(fd, path: source) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in
                hasher.update(chunk)
                try FileWriter.writeAll(out, chunk) { code in Self.writeError(code, path: file) }
            }
            if fsync(out) != 0 { throw Self.writeError(errno, path: file) }
        } catch {
            close(out)
            unlink(file)
            throw error
        }
        close(out)
        return Received(file: file, digest: hasher.finalize(), size: hasher.count)
    }

    /// Moves a received blob into the store (under its lock; one already there is kept).
    public func adopt(_ received: Received) throws(Diagnostic) {
        let lock = try self.lock(received.digest)
        defer { lock.release() }
        if contains(received.digest, size: received.size) {
            unlink(received.file)
            return
        }
        if rename(received.file, path(of: received.digest)) != 0 {
            let error = Self.writeError(errno, path: path(of: received.digest))
            unlink(received.file)
            throw error
        }
        Self.seal(path(of: received.digest))
    }

    public func discard(_ received: Received) {
        unlink(received.file)
    }

    /// Takes the writer's lock of a blob, waiting for another process that holds it.
    public func lock(_ digest: Digest) throws(Diagnostic) -> FileLock {
        try FileLock(path: locks + "/" + digest.hex, wait: true).unwrapped(file: locks)
    }

    /// Takes the lock of a blob if no other process holds it; nil when one does.
    public func tryLock(_ digest: Digest) throws(Diagnostic) -> FileLock? {
        try FileLock(path: locks + "/" + digest.hex, wait: false)
    }

    /// Opens the partial file of a blob for writing; the caller holds its lock. With `resume`, the
    /// bytes already there are kept (and hashed) so that a transfer continues from `offset`.
    /// `expectedSize`: the size the blob's descriptor declares (see `BlobWriter.expectedSize`).
    public func writer(for digest: Digest, resume: Bool = true, expectedSize: Int64? = nil) throws(Diagnostic) -> BlobWriter {
        try BlobWriter(store: self, digest: digest, resume: resume, expectedSize: expectedSize)
    }

    // MARK: Tags

    func refPath(registry: String, repository: String, tag: String) -> String {
        refs + "/" + registry + "/" + repository + "/@tags/" + tag
    }

    /// Where earlier versions recorded a tag (it could take the place of a deeper repository).
    func oldRefPath(registry: String, repository: String, tag: String) -> String {
        refs + "/" + registry + "/" + repository + "/" + tag
    }

    /// Records which manifest (or index) digest a tag resolved to.
    public func recordTag(registry: String, repository: String, tag: String, digest: Digest) throws(Diagnostic) {
        let path = refPath(registry: registry, repository: repository, tag: tag)
        var dir = refs
        for component in (registry + "/" + repository).split(separator: "/").map(String.init) + ["@tags"] {
            dir += "/" + component
            // An old-format tag record in the way of a deeper repository's directory goes.
            var info = stat()
            if lstat(dir, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG { unlink(dir) }
            try Self.makeDirectory(dir)
        }
        let temp = "\(temporary)/ref.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        try Self.writeFile(temp, Array((digest.description + "\n").utf8))
        if rename(temp, path) != 0 {
            unlink(temp)
            throw Diagnostic(kind: .output, file: path, message: "cannot record the tag: \(String(cString: strerror(errno)))")
        }
    }

    /// The digest a tag last resolved to, if recorded.
    public func resolveTag(registry: String, repository: String, tag: String) -> Digest? {
        guard
            let text = (try? FileReader.readText(refPath(registry: registry, repository: repository, tag: tag)))
                ?? (try? FileReader.readText(oldRefPath(registry: registry, repository: repository, tag: tag)))
        else { return nil }
        return try? Digest(parsing: text.trimmingCharacters(in: "\n "))
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(Diagnostic) {
        try FileWriter.writeFile(path, bytes) { writeError($0, path: path) }
    }

    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws(Diagnostic) {
        try FileWriter.writeAll(fd, buffer) { writeError($0, path: path) }
    }

    /// Whether an error is the disk-full error of `writeError` (partial files are then removed,
    /// not kept for a resumption: they hold the space the cache needs).
    public static func isDiskFull(_ error: Diagnostic) -> Bool {
        error.kind == .output && error.message.hasPrefix(diskFullPrefix)
    }
    static let diskFullPrefix = "disk full ("

    static func writeError(_ code: Int32, path: String) -> Diagnostic {
        if code == ENOSPC || code == EDQUOT {
            return Diagnostic(
                kind: .output, file: path, message: diskFullPrefix + "\(String(cString: strerror(code))))",
                hint: "free space in the cache or choose another one with --cache; the cache is intact")
        }
        return Diagnostic(kind: .output, file: path, message: "cannot write: \(String(cString: strerror(code)))")
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}

/// An exclusive flock on a file, released explicitly or when the process ends.
public final class FileLock: @unchecked Sendable {
    let fd: Int32

    init(fd: Int32) {
        self.fd = fd
    }

    /// nil when `wait` is false and another process holds the lock.
    public convenience init?(path: String, wait: Bool) throws(Diagnostic) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o664)
        if fd < 0 { throw Diagnostic(kind: .output, file: path, message: "cannot open lock file: \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(fd)
            if code == EWOULDBLOCK { return nil }
            throw Diagnostic(kind: .output, file: path, message: "cannot lock: \(String(cString: strerror(code)))")
        }
        self.init(fd: fd)
    }

    public func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// Lets the programs this process starts hold the lock too: it then lasts until the last of
    /// them ends, also when this process is killed first (a builder left running must not have
    /// a second build start beside it).
    public func shareWithChildren() {
        _ = fcntl(fd, F_SETFD, 0)
    }
}

extension Optional where Wrapped == FileLock {
    func unwrapped(file: String) throws(Diagnostic) -> FileLock {
        guard let lock = self else { throw Diagnostic(kind: .output, file: file, message: "lock unavailable") }
        return lock
    }
}

/// Writes one blob into its partial file, hashing as it goes; `commit` verifies and renames it
/// into place. Not thread-safe: one writer per blob, under the blob's lock.
public final class BlobWriter: @unchecked Sendable {
    public let digest: Digest
    let partial: String
    let final: String
    let fd: Int32
    var hasher = StreamingDigest()
    var closed = false
    /// The size the blob's descriptor declares: more bytes are refused as they come, fewer when
    /// the blob is committed.
    public let expectedSize: Int64?
    /// The hint for a blob that does not match its digest or size (default: a registry served it).
    public var damagedHint: String?

    /// Bytes already in the partial file: where a resumed transfer starts.
    public var offset: Int64 { hasher.count }

    init(store: ContentStore, digest: Digest, resume: Bool, expectedSize: Int64? = nil) throws(Diagnostic) {
        self.digest = digest
        self.expectedSize = expectedSize
        partial = store.temporary + "/" + digest.hex + ".partial"
        final = store.path(of: digest)
        fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (resume ? 0 : O_TRUNC), 0o664)
        if fd < 0 { throw ContentStore.writeError(errno, path: partial) }
        // Hash what an earlier, interrupted transfer left, then append after it.
        if resume {
            // On a read error, deinit closes the file.
            var resumed = StreamingDigest()
            try FileReader.stream(fd, path: partial) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in resumed.update(chunk) }
            hasher = resumed
        }
        lseek(fd, off_t(hasher.count), SEEK_SET)
    }

    deinit {
        if !closed { close(fd) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(Diagnostic) {
        if let expectedSize, hasher.count + Int64(bytes.count) > expectedSize {
            throw BlobWriter.sizeError(digest, declared: expectedSize, more: true, count: hasher.count + Int64(bytes.count), hint: damagedHint)
        }
        try ContentStore.writeAll(fd, bytes, path: partial)
        hasher.update(bytes)
    }

    /// Starts over (the server ignored a Range request).
    public func restart() throws(Diagnostic) {
        if ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0 { throw ContentStore.writeError(errno, path: partial) }
        hasher = StreamingDigest()
    }

    /// Verifies the digest, syncs and renames the blob into place. On a mismatch the partial file
    /// is removed, nothing is cached, and the error says so.
    public func commit() throws(Diagnostic) {
        if let expectedSize, hasher.count != expectedSize {
            discard()
            throw BlobWriter.sizeError(digest, declared: expectedSize, more: hasher.count > expectedSize, count: hasher.count, hint: damagedHint)
        }
        let actual = hasher.finalize()
        guard actual == digest else {
            discard()
            throw Diagnostic(
                kind: .invalid, message: "blob \(digest) does not match its digest: received \(hasher.count) bytes hashing to \(actual)",
                hint: damagedHint ?? "the registry or a proxy served corrupt data; it was not cached, try again")
        }
        if fsync(fd) != 0 { throw ContentStore.writeError(errno, path: partial) }
        close(fd)
        closed = true
        if rename(partial, final) != 0 { throw ContentStore.writeError(errno, path: final) }
        ContentStore.seal(final)
    }

    /// A blob that is not the size its descriptor declares; `more`: it went past it.
    public static func sizeError(_ digest: Digest, declared: Int64, more: Bool, count: Int64, hint: String? = nil) -> Diagnostic {
        Diagnostic(
            kind: .invalid,
            message: more
                ? "blob \(digest) is larger than the \(declared) bytes its descriptor declares"
                : "blob \(digest) has \(count) bytes; its descriptor declares \(declared)",
            hint: hint ?? "the manifest and the blob do not agree (a broken or hostile registry or image); nothing was cached")
    }

    /// Closes the partial file and removes it.
    public func discard() {
        if !closed {
            close(fd)
            closed = true
        }
        unlink(partial)
    }

    /// Closes the partial file and keeps it, for a later resumption (an empty one has nothing
    /// to resume: removed, not left in a shared cache's tmp/).
    public func suspend() {
        if !closed {
            var info = stat()
            let empty = fstat(fd, &info) == 0 && info.st_size == 0
            close(fd)
            closed = true
            if empty { unlink(partial) }
        }
    }
}
