import Foundation
import SystemLibraries
import ToolboxCore

/// A layer file read as a stream of tar bytes: plain, gzip (one or more members) or zstd (one or
/// more frames), told apart by the first bytes, never by the name.
public final class LayerStream {
    public enum Compression: String, Sendable {
        case none, gzip, zstd
    }

    public let path: String
    public private(set) var compression: Compression = .none
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
    /// Compressed bytes read so far (for progress).
    public private(set) var bytesRead: Int64 = 0

    public init(path: String) throws(Diagnostic) {
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
        var compression = Compression.none
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
            bytesRead += Int64(count)
        }
    }

    /// Reads decompressed bytes into `output`; 0 means the end of the stream.
    public func read(into output: UnsafeMutableRawBufferPointer) throws(Diagnostic) -> Int {
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
