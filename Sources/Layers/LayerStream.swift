import Foundation
import SystemLibraries
import ToolboxCore

/// Decodes a layer file on the calling thread: what `LayerStream` reads, directly or from its
/// decoding thread. Used by one thread at a time (handed to the decoding thread whole).
private final class LayerDecoder: @unchecked Sendable {
    let path: String
    private(set) var compression: LayerStream.Compression = .none
    private let fd: Int32
    private var input: [UInt8]
    private var inputStart = 0
    private var inputEnd = 0
    private var endOfInput = false
    private var gzip: GzipDecoder?
    private var zstd: ZstdDecoder?
    /// Inside a gzip member or zstd frame that has not ended yet.
    private var inFrame = false
    private var framesSeen = 0

    init(path: String) throws(Diagnostic) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw Diagnostic(
                kind: code == ENOENT ? .notFound : .unreadable, file: path,
                message: "cannot open the layer: \(String(cString: strerror(code)))",
                hint: code == ENOENT
                    ? "check the path; a layer named by img-pull's document is gone from its cache: pull the image again"
                    : "check the layer file's permissions")
        }
        self.fd = fd
        input = [UInt8](repeating: 0, count: 1 << 20)
        var compression = LayerStream.Compression.none
        do {
            try fillInput(minimum: 4)
        } catch {
            close(fd)
            throw error
        }
        let head = input[inputStart..<inputEnd]
        if head.starts(with: [0x1F, 0x8B]) {
            compression = .gzip
        } else if head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) {
            compression = .zstd
        }
        self.compression = compression
        do {
            switch compression {
            case .gzip: gzip = try GzipDecoder()
            case .zstd: zstd = try ZstdDecoder()
            case .none: break
            }
        } catch {
            close(fd)
            throw Diagnostic(kind: .output, file: path, message: "cannot set up the decompressor: \(error)")
        }
    }

    deinit { close(fd) }

    /// Reads until at least `minimum` bytes are buffered or the file ends.
    private func fillInput(minimum: Int) throws(Diagnostic) {
        if inputStart > 0 {
            let pending = inputEnd - inputStart
            if pending > 0 {
                input.withUnsafeMutableBytes { raw in
                    guard let base = raw.baseAddress else { return }
                    memmove(base, base + inputStart, pending)
                }
            }
            inputStart = 0
            inputEnd = pending
        }
        while inputEnd - inputStart < minimum && !endOfInput {
            let count = input.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.read(fd, base + inputEnd, raw.count - inputEnd)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw Diagnostic(kind: .unreadable, file: path, message: "cannot read the layer: \(String(cString: strerror(errno)))")
            }
            if count == 0 { endOfInput = true }
            inputEnd += count
        }
    }

    /// Reads decompressed bytes into `output`; 0 means the end of the stream.
    func read(into output: UnsafeMutableRawBufferPointer) throws(Diagnostic) -> Int {
        while true {
            if inputStart == inputEnd {
                try fillInput(minimum: 1)
                if inputStart == inputEnd {
                    if inFrame {
                        throw Diagnostic(
                            kind: .invalid, file: path, message: "the \(compression.rawValue) stream is truncated",
                            hint: "the layer file is incomplete: pull it again (img-pull --verify)")
                    }
                    return 0
                }
            }
            switch compression {
            case .none:
                let count = min(output.count, inputEnd - inputStart)
                input.withUnsafeBytes { raw in
                    guard let source = raw.baseAddress, let destination = output.baseAddress else { return }
                    destination.copyMemory(from: source + inputStart, byteCount: count)
                }
                inputStart += count
                return count
            case .gzip, .zstd:
                if !inFrame {
                    // A new member or frame starts here, or what follows is padding after the last one.
                    if compression == .gzip {
                        try fillInput(minimum: 2)
                        guard input[inputStart..<inputEnd].starts(with: [0x1F, 0x8B]) else { return 0 }
                        if framesSeen > 0 { gzip?.reset() }
                    } else if framesSeen > 0 {
                        // After a whole frame, bytes that start no frame (zstd's magic number or a
                        // skippable frame's) are padding, as after a gzip member.
                        try fillInput(minimum: 4)
                        let head = Array(input[inputStart..<min(inputEnd, inputStart + 4)])
                        let frame = head == [0x28, 0xB5, 0x2F, 0xFD] || (head.count == 4 && head[0] & 0xF0 == 0x50 && head[1...] == [0x2A, 0x4D, 0x18])
                        guard frame else { return 0 }
                    }
                    inFrame = true
                    framesSeen += 1
                }
                let step: CodecStep
                do {
                    step = try input.withUnsafeBytes { raw throws -> CodecStep in
                        let pending = UnsafeRawBufferPointer(rebasing: raw[inputStart..<inputEnd])
                        if let gzip { return try gzip.decode(pending, into: output) }
                        if let zstd { return try zstd.decode(pending, into: output) }
                        return CodecStep(consumed: 0, produced: 0, endOfFrame: true)
                    }
                } catch {
                    throw Diagnostic(
                        kind: .invalid, file: path, message: "corrupt \(compression.rawValue) data: \(error)",
                        hint: "the layer file is damaged: pull it again (img-pull --verify)")
                }
                inputStart += step.consumed
                if step.endOfFrame { inFrame = false }
                if step.produced > 0 { return step.produced }
                if step.consumed == 0 && !step.endOfFrame {
                    // The decoder needs more input than is buffered.
                    let before = inputEnd - inputStart
                    try fillInput(minimum: before + 1)
                    if inputEnd - inputStart == before {
                        throw Diagnostic(
                            kind: .invalid, file: path, message: "the \(compression.rawValue) stream is truncated",
                            hint: "the layer file is incomplete: pull it again (img-pull --verify)")
                    }
                }
            }
        }
    }
}

/// A layer file read as a stream of tar bytes: plain, gzip (one or more members) or zstd (one or
/// more frames), told apart by the first bytes, never by the name.
///
/// A compressed layer is decoded on a thread of its own, a few chunks ahead of the reader, when
/// more than one CPU is usable: decompression (about 1 GB/s for zstd, single-threaded) then runs
/// beside the reader's own work (parsing the tar, handing blocks to the compressors) instead of
/// adding to it. The reader sees the same bytes, or the same error, either way.
public final class LayerStream {
    public enum Compression: String, Sendable {
        case none, gzip, zstd
    }

    public let path: String
    public let compression: Compression
    /// Read from directly when there is no decoding thread.
    private let decoder: LayerDecoder?
    private let ahead: ReadAhead?
    /// The chunk being read from, and the position in it.
    private var chunk: ReadAhead.Chunk?
    private var position = 0
    private var ended: Diagnostic??

    /// `readAhead`: decode on a thread of its own (when the layer is compressed); by default when
    /// more than one CPU is usable.
    public init(path: String, readAhead: Bool = CPUs.usable > 1) throws(Diagnostic) {
        let decoder = try LayerDecoder(path: path)
        self.path = path
        compression = decoder.compression
        if readAhead && decoder.compression != .none {
            ahead = ReadAhead(decoder: decoder)
            self.decoder = nil
        } else {
            ahead = nil
            self.decoder = decoder
        }
    }

    deinit {
        if let chunk { ahead?.recycle(chunk) }
        ahead?.stop()
    }

    /// Reads decompressed bytes into `output`; 0 means the end of the stream.
    public func read(into output: UnsafeMutableRawBufferPointer) throws(Diagnostic) -> Int {
        if let decoder { return try decoder.read(into: output) }
        guard let ahead else { return 0 }
        while true {
            if let ended {
                if let failure = ended { throw failure }
                return 0
            }
            if let current = chunk {
                if position < current.count {
                    let count = min(output.count, current.count - position)
                    if let destination = output.baseAddress, let source = current.buffer.baseAddress {
                        destination.copyMemory(from: source + position, byteCount: count)
                    }
                    position += count
                    return count
                }
                ahead.recycle(current)
                chunk = nil
            }
            switch ahead.next() {
            case .data(let next):
                chunk = next
                position = 0
            case .end:
                ended = .some(nil)
            case .failure(let failure):
                ended = .some(failure)
            }
        }
    }
}

/// The decoding thread of a `LayerStream` and the chunks it fills: a fixed few, handed back and
/// forth, so that memory stays at a few MiB whatever the layer's size.
private final class ReadAhead: @unchecked Sendable {
    struct Chunk {
        let buffer: UnsafeMutableRawBufferPointer
        var count: Int
    }

    enum Item {
        case data(Chunk)
        case end
        case failure(Diagnostic)
    }

    private static let chunkSize = 1 << 20
    private static let chunkCount = 4
    /// Guards everything below.
    private let lock = NSCondition()
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var filled: [Item] = []
    private var filledHead = 0
    private var stopping = false
    private var running = true
    private let all: [UnsafeMutableRawBufferPointer]
    /// Taken by the decoding thread when it starts.
    private var decoder: LayerDecoder?

    init(decoder: LayerDecoder) {
        all = (0..<Self.chunkCount).map { _ in
            UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkSize, alignment: 64)
        }
        free = all
        self.decoder = decoder
        let thread = Thread { [self] in
            decode()
            lock.lock()
            running = false
            lock.broadcast()
            lock.unlock()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    deinit {
        for buffer in all { buffer.deallocate() }
    }

    /// The decoding thread: fills free chunks until the stream ends, fails, or the reader stops.
    /// The decoder (and its file) is released when this returns, before `stop` returns.
    private func decode() {
        lock.lock()
        let taken = decoder
        decoder = nil
        lock.unlock()
        guard let decoder = taken else { return }
        while true {
            lock.lock()
            while free.isEmpty && !stopping { lock.wait() }
            if stopping {
                lock.unlock()
                return
            }
            let buffer = free.removeLast()
            lock.unlock()
            var count = 0
            var last: Item?
            do {
                while count < buffer.count {
                    let read = try decoder.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[count...]))
                    if read == 0 {
                        last = .end
                        break
                    }
                    count += read
                }
            } catch {
                last = .failure(error)
            }
            lock.lock()
            if count > 0 {
                filled.append(.data(Chunk(buffer: buffer, count: count)))
            } else {
                free.append(buffer)
            }
            if let last { filled.append(last) }
            lock.signal()
            lock.unlock()
            if last != nil { return }
        }
    }

    /// The next chunk in stream order, or how the stream ended; waits for the decoding thread.
    func next() -> Item {
        lock.lock()
        defer { lock.unlock() }
        while filledHead == filled.count { lock.wait() }
        let item = filled[filledHead]
        filledHead += 1
        if filledHead == filled.count {
            filled.removeAll(keepingCapacity: true)
            filledHead = 0
        }
        return item
    }

    /// Gives a chunk the reader is done with back to the decoding thread.
    func recycle(_ chunk: Chunk) {
        lock.lock()
        free.append(chunk.buffer)
        lock.signal()
        lock.unlock()
    }

    /// Stops the decoding thread (the reader is gone) and waits until it no longer runs.
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        while running { lock.wait() }
        lock.unlock()
    }
}
