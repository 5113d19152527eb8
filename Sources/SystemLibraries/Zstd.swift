import CZstd

/// One-shot zstd compression and decompression (libzstd). Streaming layer decompression builds
/// on the same library in img-squash.
public enum Zstd {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    public static var version: String { String(cString: ZSTD_versionString()) }

    public static func compress(_ input: [UInt8], level: Int32 = 3) throws(Failure) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let written = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { inp in
                ZSTD_compress(out.baseAddress, out.count, inp.baseAddress, inp.count, level)
            }
        }
        if ZSTD_isError(written) != 0 { throw Failure(description: String(cString: ZSTD_getErrorName(written))) }
        return Array(output.prefix(written))
    }

    /// Decompresses a single frame whose content size is recorded in its header, up to `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 30) throws(Failure) -> [UInt8] {
        let size = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        if size == ZSTD_CONTENTSIZE_ERROR { throw Failure(description: "not a zstd frame") }
        if size == ZSTD_CONTENTSIZE_UNKNOWN || size > UInt64(limit) {
            throw Failure(description: "frame content size unknown or over the limit of \(limit) bytes")
        }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { inp in ZSTD_decompress(out.baseAddress, out.count, inp.baseAddress, inp.count) }
        }
        if ZSTD_isError(written) != 0 { throw Failure(description: String(cString: ZSTD_getErrorName(written))) }
        return Array(output.prefix(written))
    }
}
