import SystemLibraries

/// How an image is compressed.
public enum Compression: String, Sendable, CaseIterable, Codable {
    case zstd, gzip, none

    /// The default level: zstd 3 (what the Pyxis caching importer uses), gzip 6.
    public var defaultLevel: Int {
        switch self {
        case .zstd: 3
        case .gzip: 6
        case .none: 0
        }
    }

    public var levels: ClosedRange<Int> {
        switch self {
        case .zstd: 1...22
        case .gzip: 1...9
        case .none: 0...0
        }
    }
}

/// The choices that shape an image. Equal options and equal input give a byte-identical file.
public struct SquashFSOptions: Sendable, Equatable {
    public var compression: Compression = .zstd
    public var level: Int = Compression.zstd.defaultLevel
    /// A power of two from 4 KiB to 1 MiB.
    public var blockSize: Int = 128 << 10
    /// Compression threads (does not change the output).
    public var threads: Int = 1
    /// The image's modification time in the superblock.
    public var modificationTime: UInt32 = 0

    public init() {}

    public static let blockSizes = 4096...(1 << 20)
}

/// A per-thread compressor for data and metadata blocks; `none` stores everything as is.
final class Compressor {
    private let inner: BlockCompressor?
    private var scratch: [UInt8]

    init?(_ options: SquashFSOptions) {
        switch options.compression {
        case .zstd:
            guard let compressor = BlockCompressor(.zstd(level: Int32(options.level))) else { return nil }
            inner = compressor
        case .gzip:
            guard let compressor = BlockCompressor(.zlib(level: Int32(options.level))) else { return nil }
            inner = compressor
        case .none:
            inner = nil
        }
        scratch = [UInt8](repeating: 0, count: max(options.blockSize, Format.metadataBlockSize))
    }

    /// The compressed bytes, or nil when compression would not make the block smaller.
    func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let inner, input.count > 1 else { return nil }
        if scratch.count < input.count { scratch = [UInt8](repeating: 0, count: input.count) }
        let size = scratch.withUnsafeMutableBytes { out in
            inner.compress(input, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<(input.count - 1)]))
        }
        guard let size else { return nil }
        return Array(scratch[0..<size])
    }
}
