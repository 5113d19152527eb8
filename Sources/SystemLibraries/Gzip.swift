import CToolboxShim
import CZlib

/// gzip/zlib decompression (zlib), for gzip-compressed image layers.
public enum Gzip {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    public static var zlibVersion: String { String(cString: CZlib.zlibVersion()) }

    /// Decompresses a whole gzip (or zlib) stream, up to `limit` bytes of output.
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 30) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        // 15 + 32: the largest window, with automatic gzip/zlib header detection.
        guard tbx_inflate_init2(&stream, 15 + 32) == Z_OK else { throw Failure(description: "inflateInit2 failed") }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { inp in
            stream.next_in = inp.baseAddress
            stream.avail_in = uInt(inp.count)
            while true {
                let result = chunk.withUnsafeMutableBufferPointer { out -> Int32 in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(out.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                output.append(contentsOf: chunk[0..<produced])
                if output.count > limit { return Z_BUF_ERROR }
                if result == Z_STREAM_END { return Z_OK }
                if result != Z_OK { return result }
                if stream.avail_in == 0 && produced == 0 { return Z_DATA_ERROR }
            }
        }
        guard status == Z_OK else {
            let reason = stream.msg.map { String(cString: $0) } ?? "truncated or corrupt data (zlib status \(status))"
            throw Failure(description: reason)
        }
        return output
    }
}
