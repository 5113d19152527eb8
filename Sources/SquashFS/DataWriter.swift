import Crypto
import Foundation
import ToolboxCore

/// Streams regular files' data into the image: full blocks are compressed on all cores, written
/// in order by one writer thread, tails are packed into fragment blocks (compressed on the same
/// cores), blocks of zeros become holes, and a file whose content equals an earlier file's is
/// stored once.
///
/// The producer (one thread) calls `beginFile`, `append`/`appendZeros`, `endFile` for each file,
/// then `finish`. Output is deterministic: it depends only on the order of the calls.
final class DataWriter: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let options: SquashFSOptions
    private let blockSize: Int
    private let maximumInFlight: Int

    // MARK: Producer state (producer thread only)
    private var block: [UInt8]
    private var blockFill = 0
    private var currentFile = -1
    private var currentSize: UInt64 = 0
    private var nextSequence = 0
    private(set) var fileCount = 0
    private var sizesSeen: Set<UInt64> = []
    private var currentHash = true

    // MARK: Shared state
    // Three conditions, so that an event wakes only the thread that waits for it.
    /// Guards `jobs`, `jobHead`, `stopWorkers`: the compression workers wait on it.
    private let jobLock = NSCondition()
    private var jobs: [Job] = []
    private var jobHead = 0
    private var stopWorkers = false
    /// Guards `ready`, `packedFragments`, `stopWriter`: the writer waits on it.
    private let readyLock = NSCondition()
    private var ready: [Int: Item] = [:]
    /// Fragment blocks compressed by the workers, by index, until the writer writes them.
    private var packedFragments: [Int: (stored: [UInt8], compressed: Bool)] = [:]
    private var stopWriter = false
    /// Guards `taken`, `failure`, `writerDone`, `workersRunning`: the producer waits on it.
    private let flowLock = NSCondition()
    private var taken = 0
    private var failure: Diagnostic?
    private var writerDone = false
    private var workersRunning = 0

    // MARK: Writer state (writer thread only)
    private var offset: UInt64
    private var layouts: [FileLayout] = []
    private var fragments: [FragmentEntry] = []
    private var fragmentBuffer: [UInt8] = []
    /// Fragment blocks handed to the workers and not written yet, oldest first, with the item
    /// sequence from which each is due.
    private var unwrittenFragments: [(index: Int, due: Int)] = []
    /// The sequence number of the item the writer handles.
    private var writerSequence = 0
    /// Stored files by content key: their index in `layouts` (a dictionary of one entry per file:
    /// 20 bytes a bucket, not the 72 of a digest and a layout).
    private var known: [ContentKey: Int32] = [:]
    /// Files with full blocks whose size no earlier file had: their blocks were not hashed. When a
    /// file of the same size comes, their keys are computed from the blocks read back.
    private var unhashed: [UInt64: [(layout: Int32, tail: SHA256.Digest)]] = [:]
    private var fileHasher = SHA256()
    /// Whether every block of the writer's current file came with its digest.
    private var fileHashed = true
    private var writerFile = -1
    private(set) var duplicateFiles = 0

    /// A fragment block is written between two files, at the first file end at least this many
    /// items after it was handed to the workers (or earlier, when more than
    /// `maximumUnwrittenFragments` wait). Both are constants, not derived from the number of
    /// threads: where a fragment lands depends only on the order of the items, so the image is
    /// the same whatever the threads and their timing.
    private static let fragmentLag = 64
    private static let maximumUnwrittenFragments = 8

    private struct Job {
        /// The block's item sequence, or the fragment block's index.
        var sequence: Int
        var file: Int
        var data: [UInt8]
        /// Hash the stored block (for finding duplicates): only when another file had this size.
        var hash: Bool
        var fragment = false
    }

    private enum Item {
        case block(file: Int, stored: [UInt8], compressed: Bool, digest: SHA256.Digest?)
        /// `count` blocks of zeros.
        case hole(file: Int, count: Int)
        case fileEnd(file: Int, size: UInt64, tail: [UInt8])
        case finish
    }

    /// Writes data from `start` on in the open file `fd` (`path` names it in errors).
    init(fd: Int32, path: String, start: UInt64, options: SquashFSOptions) throws(Diagnostic) {
        self.fd = fd
        self.path = path
        self.options = options
        self.blockSize = options.blockSize
        self.offset = start
        self.maximumInFlight = max(32, options.threads * 8)
        block = [UInt8](repeating: 0, count: options.blockSize)
        guard Compressor(options) != nil else {
            throw Diagnostic(kind: .output, message: "cannot set up the \(options.compression.rawValue) compressor")
        }
        for _ in 0..<max(1, options.threads) {
            workersRunning += 1
            let thread = Thread { [self] in self.work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
        let writer = Thread { [self] in self.write() }
        writer.start()
    }

    // MARK: Producer

    /// Starts a new regular file of `size` bytes; returns its id for `InodeRecord.Kind.file`.
    func beginFile(size: UInt64) -> Int {
        currentFile = fileCount
        fileCount += 1
        currentSize = 0
        blockFill = 0
        // Only a file whose size was seen before can be a duplicate of an earlier one: the blocks
        // of the first file of each size are not hashed now (most bytes are in such files).
        currentHash = !sizesSeen.insert(size).inserted
        return currentFile
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(Diagnostic) {
        var position = 0
        while position < bytes.count {
            let count = min(blockSize - blockFill, bytes.count - position)
            let fill = blockFill
            block.withUnsafeMutableBytes { destination in
                guard let target = destination.baseAddress, let source = bytes.baseAddress else { return }
                (target + fill).copyMemory(from: source + position, byteCount: count)
            }
            blockFill += count
            position += count
            currentSize += UInt64(count)
            if blockFill == blockSize { try submitBlock() }
        }
    }

    /// Appends `count` zero bytes without reading them from anywhere (the holes of sparse files).
    func appendZeros(_ count: UInt64) throws(Diagnostic) {
        var remaining = count
        if blockFill > 0 {
            let fill = Int(min(UInt64(blockSize - blockFill), remaining))
            let start = blockFill
            block.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                _ = (base + start).initializeMemory(as: UInt8.self, repeating: 0, count: fill)
            }
            blockFill += fill
            remaining -= UInt64(fill)
            currentSize += UInt64(fill)
            if blockFill == blockSize { try submitBlock() }
        }
        if remaining >= UInt64(blockSize) {
            // One item for the whole run of holes.
            let blocks = remaining / UInt64(blockSize)
            try post(.hole(file: currentFile, count: Int(blocks)))
            remaining -= blocks * UInt64(blockSize)
            currentSize += blocks * UInt64(blockSize)
        }
        if remaining > 0 {
            let fill = Int(remaining)
            block.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                _ = base.initializeMemory(as: UInt8.self, repeating: 0, count: fill)
            }
            blockFill = fill
            currentSize += remaining
        }
    }

    func endFile() throws(Diagnostic) {
        try post(.fileEnd(file: currentFile, size: currentSize, tail: Array(block[0..<blockFill])))
        blockFill = 0
    }

    private func submitBlock() throws(Diagnostic) {
        // Hand the full buffer over and continue in a new one (no copy of the block's bytes).
        var data = [UInt8](unsafeUninitializedCapacity: blockSize) { _, count in count = blockSize }
        swap(&data, &block)
        blockFill = 0
        let sequence = try reserveSequence()
        jobLock.lock()
        jobs.append(Job(sequence: sequence, file: currentFile, data: data, hash: currentHash))
        jobLock.signal()
        jobLock.unlock()
    }

    private func post(_ item: Item) throws(Diagnostic) {
        let sequence = try reserveSequence()
        deliver(item, sequence: sequence)
    }

    private func deliver(_ item: Item, sequence: Int) {
        readyLock.lock()
        ready[sequence] = item
        readyLock.signal()
        readyLock.unlock()
    }

    /// The next sequence number, once fewer than `maximumInFlight` items wait for the writer.
    private func reserveSequence() throws(Diagnostic) -> Int {
        flowLock.lock()
        defer { flowLock.unlock() }
        while failure == nil && nextSequence - taken >= maximumInFlight { flowLock.wait() }
        if let failure { throw failure }
        nextSequence += 1
        return nextSequence - 1
    }

    /// Records the first failure and wakes every thread so that they stop.
    private func fail(_ diagnostic: Diagnostic) {
        flowLock.lock()
        if failure == nil { failure = diagnostic }
        flowLock.broadcast()
        flowLock.unlock()
        stopAll()
    }

    private func stopAll() {
        readyLock.lock()
        stopWriter = true
        readyLock.broadcast()
        readyLock.unlock()
        jobLock.lock()
        stopWorkers = true
        jobs.removeAll()
        jobHead = 0
        jobLock.broadcast()
        jobLock.unlock()
    }

    /// Waits for every block to be written and the last fragment block to be flushed.
    func finish() throws(Diagnostic) -> (layouts: [FileLayout], fragments: [FragmentEntry], end: UInt64) {
        let sequence = try reserveSequence()
        deliver(.finish, sequence: sequence)
        flowLock.lock()
        while !writerDone { flowLock.wait() }
        flowLock.unlock()
        jobLock.lock()
        stopWorkers = true
        jobLock.broadcast()
        jobLock.unlock()
        flowLock.lock()
        while workersRunning > 0 { flowLock.wait() }
        let failure = self.failure
        flowLock.unlock()
        if let failure { throw failure }
        return (layouts, fragments, offset)
    }

    /// Stops the threads when the image is abandoned after an error elsewhere.
    func abandon() {
        fail(Diagnostic(kind: .output, message: "abandoned"))
        flowLock.lock()
        while workersRunning > 0 || !writerDone { flowLock.wait() }
        flowLock.unlock()
    }

    // MARK: Workers

    private func workerExit() {
        flowLock.lock()
        workersRunning -= 1
        flowLock.broadcast()
        flowLock.unlock()
    }

    private func work() {
        // Each worker has its own compressor (their contexts are not thread-safe).
        guard let compressor = Compressor(options) else {
            fail(Diagnostic(kind: .output, message: "cannot set up the \(options.compression.rawValue) compressor"))
            workerExit()
            return
        }
        while true {
            jobLock.lock()
            while jobHead == jobs.count && !stopWorkers { jobLock.wait() }
            if jobHead == jobs.count {
                jobLock.unlock()
                workerExit()
                return
            }
            let job = jobs[jobHead]
            jobs[jobHead].data = []
            jobHead += 1
            if jobHead > 1024 && jobHead * 2 > jobs.count {
                jobs.removeFirst(jobHead)
                jobHead = 0
            }
            jobLock.unlock()

            if job.fragment {
                let packed = job.data.withUnsafeBytes { compressor.compress($0) }
                readyLock.lock()
                packedFragments[job.sequence] = packed.map { ($0, true) } ?? (job.data, false)
                readyLock.signal()
                readyLock.unlock()
                continue
            }
            let item: Item
            if Self.isZero(job.data) {
                item = .hole(file: job.file, count: 1)
            } else if let packed = job.data.withUnsafeBytes({ compressor.compress($0) }) {
                item = .block(file: job.file, stored: packed, compressed: true, digest: job.hash ? SHA256.hash(data: packed) : nil)
            } else {
                item = .block(file: job.file, stored: job.data, compressed: false, digest: job.hash ? SHA256.hash(data: job.data) : nil)
            }
            deliver(item, sequence: job.sequence)
        }
    }

    static func isZero(_ data: [UInt8]) -> Bool {
        data.withUnsafeBytes { raw in
            let words = raw.count / 8
            guard let base = raw.baseAddress else { return true }
            for index in 0..<words where base.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) != 0 {
                return false
            }
            for index in (words * 8)..<raw.count where raw[index] != 0 { return false }
            return true
        }
    }

    // MARK: Writer

    private func write() {
        var sequence = 0
        while true {
            readyLock.lock()
            while ready[sequence] == nil && !stopWriter { readyLock.wait() }
            let item = stopWriter ? nil : ready.removeValue(forKey: sequence)
            readyLock.unlock()
            guard let item else { break }
            let finished: Bool
            writerSequence = sequence
            do {
                finished = try handle(item)
            } catch {
                fail(error)
                break
            }
            sequence += 1
            flowLock.lock()
            taken = sequence
            flowLock.signal()
            flowLock.unlock()
            if finished { break }
        }
        flowLock.lock()
        writerDone = true
        flowLock.broadcast()
        flowLock.unlock()
    }

    private func layoutIndex(_ file: Int) -> Int {
        if file != writerFile {
            writerFile = file
            fileHasher = SHA256()
            fileHashed = true
            while layouts.count <= file { layouts.append(FileLayout()) }
            layouts[file].blocksStart = offset
        }
        return file
    }

    private func handle(_ item: Item) throws(Diagnostic) -> Bool {
        switch item {
        case .block(let file, let stored, let compressed, let digest):
            let index = layoutIndex(file)
            try writeAll(stored)
            let size = UInt32(stored.count) | (compressed ? 0 : Format.dataUncompressed)
            layouts[index].blockSizes.append(size)
            if let digest {
                Self.addBlock(digest, size: size, to: &fileHasher)
            } else {
                fileHashed = false
            }
        case .hole(let file, let count):
            let index = layoutIndex(file)
            layouts[index].blockSizes.append(contentsOf: repeatElement(0, count: count))
            layouts[index].sparse += UInt64(blockSize) * UInt64(count)
            for _ in 0..<count { Self.addHole(to: &fileHasher) }
        case .fileEnd(let file, let size, let tail):
            try endFile(file, size: size, tail: tail)
            // Between two files: the place for the fragment blocks that are due.
            try writeFragments(all: false)
        case .finish:
            if !fragmentBuffer.isEmpty { try flushFragment() }
            try writeFragments(all: true)
            return true
        }
        return false
    }

    private func endFile(_ file: Int, size: UInt64, tail: [UInt8]) throws(Diagnostic) {
        let index = layoutIndex(file)
        layouts[index].size = size
        guard size > 0 else {
            layouts[index] = FileLayout()
            return
        }
        let tailDigest = SHA256.hash(data: tail)
        guard fileHashed else {
            // The first file of this size: no key yet (see `unhashed`).
            try storeTail(tail, index: index)
            unhashed[size, default: []].append((Int32(index), tailDigest))
            return
        }
        let key = Self.key(&fileHasher, tail: tailDigest, size: size)
        if known[key] == nil, let waiting = unhashed.removeValue(forKey: size) {
            for earlier in waiting { known[try readBackKey(layouts[Int(earlier.layout)], tail: earlier.tail)] = earlier.layout }
        }
        if let earlier = known[key] {
            // The same content was stored before: point at it and take back this copy's blocks.
            offset = layouts[index].blocksStart
            layouts[index] = layouts[Int(earlier)]
            duplicateFiles += 1
            return
        }
        try storeTail(tail, index: index)
        known[key] = Int32(index)
    }

    /// Packs a file's tail into the fragment block being filled.
    private func storeTail(_ tail: [UInt8], index: Int) throws(Diagnostic) {
        guard !tail.isEmpty else { return }
        if fragmentBuffer.count + tail.count > blockSize { try flushFragment() }
        layouts[index].fragment = UInt32(fragments.count)
        layouts[index].fragmentOffset = UInt32(fragmentBuffer.count)
        fragmentBuffer.append(contentsOf: tail)
    }

    // A file's key: the digests and sizes of its stored blocks (a marker for holes), the digest of
    // its tail, its size. Equal keys mean equal content (compression is deterministic).
    private static func addBlock(_ digest: SHA256.Digest, size: UInt32, to hasher: inout SHA256) {
        digest.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        withUnsafeBytes(of: size.littleEndian) { hasher.update(bufferPointer: $0) }
    }

    private static func addHole(to hasher: inout SHA256) {
        withUnsafeBytes(of: UInt32(0)) { hasher.update(bufferPointer: $0) }
    }

    private static func key(_ hasher: inout SHA256, tail: SHA256.Digest, size: UInt64) -> ContentKey {
        tail.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        withUnsafeBytes(of: size.littleEndian) { hasher.update(bufferPointer: $0) }
        return ContentKey(hasher.finalize())
    }

    /// A file's content key: 128 bits of the SHA-256 over its blocks' digests and sizes, its
    /// tail's digest and its size (two files of different content share one with a probability
    /// of about n^2 / 2^129: 10^-27 for a million files).
    struct ContentKey: Hashable {
        var high: UInt64
        var low: UInt64

        init(_ digest: SHA256.Digest) {
            var words: (UInt64, UInt64) = (0, 0)
            digest.withUnsafeBytes { raw in
                words = (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
            (high, low) = words
        }
    }

    /// The key of a file stored without block digests, from its blocks read back from the image.
    private func readBackKey(_ layout: FileLayout, tail: SHA256.Digest) throws(Diagnostic) -> ContentKey {
        var hasher = SHA256()
        var position = layout.blocksStart
        for size in layout.blockSizes {
            let count = Int(size & ~Format.dataUncompressed)
            if size == 0 {
                Self.addHole(to: &hasher)
                continue
            }
            var stored = [UInt8](repeating: 0, count: count)
            let read = stored.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(position)) }
            guard read == count else {
                throw Diagnostic(kind: .output, file: path, message: "cannot read back the image: \(String(cString: strerror(errno)))")
            }
            Self.addBlock(SHA256.hash(data: stored), size: size, to: &hasher)
            position += UInt64(count)
        }
        return Self.key(&hasher, tail: tail, size: layout.size)
    }

    /// Hands the full fragment block to the workers; `writeFragments` writes it when it is due.
    private func flushFragment() throws(Diagnostic) {
        let index = fragments.count
        fragments.append(FragmentEntry(start: 0, size: 0))
        var data: [UInt8] = []
        data.reserveCapacity(blockSize)
        swap(&data, &fragmentBuffer)
        jobLock.lock()
        jobs.append(Job(sequence: index, file: -1, data: data, hash: false, fragment: true))
        jobLock.signal()
        jobLock.unlock()
        unwrittenFragments.append((index, writerSequence + Self.fragmentLag))
    }

    /// Writes the fragment blocks that are due (all of them at the end), oldest first, waiting
    /// for the workers where one is not compressed yet. Called only between two files, where
    /// the offset is not inside a file's blocks.
    private func writeFragments(all: Bool) throws(Diagnostic) {
        var written = 0
        while written < unwrittenFragments.count {
            let (index, due) = unwrittenFragments[written]
            guard all || due <= writerSequence || unwrittenFragments.count - written > Self.maximumUnwrittenFragments else { break }
            readyLock.lock()
            while packedFragments[index] == nil && !stopWriter { readyLock.wait() }
            let packed = packedFragments.removeValue(forKey: index)
            readyLock.unlock()
            guard let packed else { throw Diagnostic(kind: .output, message: "abandoned") }
            fragments[index] = FragmentEntry(
                start: offset, size: UInt32(packed.stored.count) | (packed.compressed ? 0 : Format.dataUncompressed))
            try writeAll(packed.stored)
            written += 1
        }
        unwrittenFragments.removeFirst(written)
    }

    private func writeAll(_ bytes: [UInt8]) throws(Diagnostic) {
        try ImageFile.write(fd: fd, bytes, at: offset, path: path)
        offset += UInt64(bytes.count)
    }
}

/// Positioned writes with clear errors (a full disk names the file).
enum ImageFile {
    static func write(fd: Int32, _ bytes: [UInt8], at start: UInt64, path: String) throws(Diagnostic) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(Diagnostic) in
                try FileWriter.writeAll(fd, raw, at: start) { code in
                    Diagnostic(
                        kind: .output, file: path, message: "cannot write the image: \(String(cString: strerror(code)))",
                        hint: code == ENOSPC ? "free space there or write the image elsewhere (-o, EDF_IMAGESTORE)" : nil)
                }
            }
        }
        try result.get()
    }
}
