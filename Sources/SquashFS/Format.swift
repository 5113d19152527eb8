/// The squashfs 4.0 on-disk format: constants and little-endian encoding.
///
/// Learnt from the public descriptions of the format (the Linux kernel's
/// Documentation/filesystems/squashfs.rst and squashfs-tools-ng's doc/format.adoc); the code is
/// our own. All integers are little endian; an image is a superblock, the data blocks and
/// fragment blocks, then the inode, directory, fragment, id and xattr tables, padded to 4 KiB.
enum Format {
    static let magic: UInt32 = 0x7371_7368
    static let superblockSize = 96
    /// Metadata (inodes, directories, tables) is cut into blocks of this many bytes before compression.
    static let metadataBlockSize = 8192
    /// In a metadata block's 16-bit header: the block is stored uncompressed.
    static let metadataUncompressed: UInt16 = 0x8000
    /// In a data block size or fragment size: the block is stored uncompressed.
    static let dataUncompressed: UInt32 = 1 << 24
    static let invalidFragment: UInt32 = 0xFFFF_FFFF
    static let invalidXattr: UInt32 = 0xFFFF_FFFF
    static let invalidTable: UInt64 = 0xFFFF_FFFF_FFFF_FFFF
    /// The image file is padded to a multiple of this (the kernel reads in device blocks).
    static let devicePadding = 4096
    /// The longest name the kernel accepts in a directory entry.
    static let maximumNameLength = 256
    /// Entries after one directory header, at most.
    static let directoryRunLength = 256

    enum Compressor: UInt16 {
        case gzip = 1
        case zstd = 6
    }

    struct Flags: OptionSet {
        var rawValue: UInt16
        static let uncompressedInodes = Flags(rawValue: 0x0001)
        static let uncompressedData = Flags(rawValue: 0x0002)
        static let uncompressedFragments = Flags(rawValue: 0x0008)
        static let noFragments = Flags(rawValue: 0x0010)
        static let alwaysFragments = Flags(rawValue: 0x0020)
        static let duplicates = Flags(rawValue: 0x0040)
        static let uncompressedXattrs = Flags(rawValue: 0x0100)
        static let noXattrs = Flags(rawValue: 0x0200)
        static let uncompressedIDs = Flags(rawValue: 0x0800)
    }

    /// Inode types; directory entries carry the basic type of an extended inode.
    enum InodeType: UInt16 {
        case directory = 1, file, symlink, blockDevice, characterDevice, fifo, socket
        case extendedDirectory, extendedFile, extendedSymlink, extendedBlockDevice, extendedCharacterDevice
        case extendedFifo, extendedSocket

        var basic: InodeType {
            rawValue >= 8 ? InodeType(rawValue: rawValue - 7) ?? self : self
        }
    }

    /// Xattr name prefixes that squashfs can store, and their type ids.
    static let xattrPrefixes: [(prefix: [UInt8], id: UInt16)] = [
        (Array("user.".utf8), 0), (Array("trusted.".utf8), 1), (Array("security.".utf8), 2),
    ]

    /// Linux's device number encoding (new_encode_dev), which squashfs stores.
    static func encodeDevice(major: UInt32, minor: UInt32) -> UInt32 {
        (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)
    }
}

/// A growing byte buffer with little-endian writers.
struct ByteBuffer {
    var bytes: [UInt8] = []

    init(capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    var count: Int { bytes.count }

    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    mutating func u32(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func u64(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func append(_ other: [UInt8]) {
        bytes.append(contentsOf: other)
    }
}

/// Metadata written as a stream of 8 KiB blocks, each compressed on its own (or stored when
/// compression does not help) and preceded by a 16-bit header.
struct MetadataStream {
    private let compressor: Compressor
    /// The finished blocks, headers included.
    private(set) var output: [UInt8] = []
    /// Where each finished block starts in `output`.
    private(set) var blockStarts: [Int] = []
    private var pending: [UInt8] = []

    init(compressor: Compressor) {
        self.compressor = compressor
        pending.reserveCapacity(Format.metadataBlockSize * 2)
    }

    /// Where the next byte goes: the start of the current block within the stream, shifted left
    /// by 16, ORed with the offset into the uncompressed block.
    var reference: UInt64 { UInt64(output.count) << 16 | UInt64(pending.count) }
    var blockStart: UInt32 { UInt32(truncatingIfNeeded: output.count) }
    var offsetInBlock: UInt16 { UInt16(truncatingIfNeeded: pending.count) }
    /// Bytes written so far, uncompressed.
    private(set) var uncompressedCount = 0

    mutating func append(_ bytes: [UInt8]) {
        pending.append(contentsOf: bytes)
        uncompressedCount += bytes.count
        while pending.count >= Format.metadataBlockSize {
            flush(count: Format.metadataBlockSize)
        }
    }

    private mutating func flush(count: Int) {
        blockStarts.append(output.count)
        let packed = pending.withUnsafeBytes { compressor.compress(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        if let packed {
            let header = UInt16(packed.count)
            output.append(UInt8(truncatingIfNeeded: header))
            output.append(UInt8(truncatingIfNeeded: header >> 8))
            output.append(contentsOf: packed)
        } else {
            let header = UInt16(count) | Format.metadataUncompressed
            output.append(UInt8(truncatingIfNeeded: header))
            output.append(UInt8(truncatingIfNeeded: header >> 8))
            output.append(contentsOf: pending[0..<count])
        }
        pending.removeFirst(count)
    }

    /// Flushes the last, partial block; the stream is complete afterwards.
    mutating func finish() {
        if !pending.isEmpty { flush(count: pending.count) }
    }
}
