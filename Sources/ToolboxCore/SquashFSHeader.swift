import Glibc

/// The fields of a squashfs 4.0 superblock that the stages check before they use an image file
/// they did not just write: ns-enter before it mounts one, img-squash before it reuses one.
public struct SquashFSHeader: Sendable, Equatable {
    /// `gzip`, `zstd`, ... as mksquashfs names its compressors.
    public var compression: String
    public var blockSize: Int
    /// The image's length; the file may be longer (padding), never shorter.
    public var bytesUsed: UInt64

    /// Why a file is not an image to use.
    public enum Problem: Error, Sendable, Equatable {
        case notSquashFS
        case version(major: UInt16, minor: UInt16)
        /// The file ends before the image does: a copy or a build that was cut short.
        case truncated(size: UInt64, bytesUsed: UInt64)

        /// Says what is wrong with `path`.
        public func describe(_ path: String) -> String {
            switch self {
            case .notSquashFS: "\(path) is not a squashfs image"
            case .version(let major, let minor): "\(path) is a squashfs image of version \(major).\(minor), not 4.0"
            case .truncated(let size, let bytesUsed):
                "\(path) is truncated: the file has \(size) bytes of the \(bytesUsed) its squashfs superblock names"
            }
        }
    }

    /// Reads and checks the superblock of the open regular file `fd`.
    public static func read(_ fd: Int32) -> Result<SquashFSHeader, Problem> {
        var bytes = [UInt8](repeating: 0, count: 96)
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 96, 0) }
        var info = stat()
        guard count == 96, fstat(fd, &info) == 0, bytes.starts(with: [0x68, 0x73, 0x71, 0x73]) else { return .failure(.notSquashFS) }
        func number(_ offset: Int, _ size: Int) -> UInt64 {
            (0..<size).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
        }
        let major = UInt16(number(28, 2)), minor = UInt16(number(30, 2))
        guard major == 4, minor == 0 else { return .failure(.version(major: major, minor: minor)) }
        let bytesUsed = number(40, 8)
        let size = UInt64(max(0, info.st_size))
        guard bytesUsed <= size else { return .failure(.truncated(size: size, bytesUsed: bytesUsed)) }
        let names = [1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"]
        let id = Int(number(20, 2))
        return .success(
            SquashFSHeader(compression: names[id] ?? "compressor \(id)", blockSize: Int(number(12, 4)), bytesUsed: bytesUsed))
    }
}
