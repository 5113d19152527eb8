import CToolboxShim
import CZlib
import CZstd

/// The result of one step of a streaming decompressor.
public struct CodecStep: Sendable, Equatable {
    /// Input bytes used.
    public var consumed: Int
    /// Output bytes written.
    public var produced: Int
    /// The end of a gzip member or zstd frame was reached in this step.
    public var endOfFrame: Bool

    public init(consumed: Int, produced: Int, endOfFrame: Bool) {
        self.consumed = consumed
        self.produced = produced
        self.endOfFrame = endOfFrame
    }
}

/// Streaming gzip decompression with Intel ISA-L (header and CRC-32 checked). One instance
/// decodes one member; `reset()` prepares it for the next member of a multi-member file.
public final class GzipDecoder {
    private let state: OpaquePointer

    public init() throws(Gzip.Failure) {
        guard let state = tbx_inflate_create() else { throw Gzip.Failure(description: "out of memory for the gzip decoder") }
        self.state = state
    }

    deinit { tbx_inflate_free(state) }

    public func reset() {
        tbx_inflate_reset(state)
    }

    public func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(Gzip.Failure) -> CodecStep {
        var consumed = 0
        var produced = 0
        var finished: Int32 = 0
        let status = tbx_inflate_step(state, input.baseAddress, input.count, output.baseAddress, output.count, &consumed, &produced, &finished)
        guard status >= 0 else {
            let reason: String
            switch status {
            case -1: reason = "invalid deflate block"
            case -2: reason = "invalid deflate symbol"
            case -3: reason = "invalid back reference"
            case -4: reason = "invalid gzip header"
            case -5: reason = "unsupported compression method"
            case -6: reason = "CRC-32 mismatch"
            default: reason = "ISA-L status \(status)"
            }
            throw Gzip.Failure(description: reason)
        }
        return CodecStep(consumed: consumed, produced: produced, endOfFrame: finished != 0)
    }
}

/// Streaming zstd decompression; frames follow each other without a reset.
public final class ZstdDecoder {
    private let stream: OpaquePointer

    public init() throws(Zstd.Failure) {
        guard let stream = ZSTD_createDStream() else { throw Zstd.Failure(description: "ZSTD_createDStream failed") }
        self.stream = stream
        ZSTD_initDStream(stream)
    }

    deinit { ZSTD_freeDStream(stream) }

    public func decode(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(Zstd.Failure) -> CodecStep {
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let hint = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
        if ZSTD_isError(hint) != 0 { throw Zstd.Failure(description: String(cString: ZSTD_getErrorName(hint))) }
        return CodecStep(consumed: inBuffer.pos, produced: outBuffer.pos, endOfFrame: hint == 0)
    }
}

/// One-shot compression of blocks into a caller's buffer, for squashfs data and metadata blocks.
/// Not thread-safe: every thread uses its own instance.
public final class BlockCompressor {
    public enum Algorithm: Sendable {
        /// zlib streams (what squashfs calls gzip), level 1 to 9.
        case zlib(level: Int32)
        /// zstd frames, level 1 to 22.
        case zstd(level: Int32)
    }

    public let algorithm: Algorithm
    private var zstdContext: OpaquePointer?
    private var zlibStream: UnsafeMutablePointer<z_stream>?

    /// Nil when the library cannot allocate its context.
    public init?(_ algorithm: Algorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .zstd(let level):
            guard let context = ZSTD_createCCtx() else { return nil }
            ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
            zstdContext = context
        case .zlib(let level):
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            guard tbx_deflate_init2(stream, level, 15) == Z_OK else {
                stream.deallocate()
                return nil
            }
            zlibStream = stream
        }
    }

    deinit {
        if let zstdContext { ZSTD_freeCCtx(zstdContext) }
        if let zlibStream {
            deflateEnd(zlibStream)
            zlibStream.deallocate()
        }
    }

    /// Compresses `input` into `output`; returns the compressed size, or nil when the result would
    /// not be smaller than `output.count` (the caller then stores the block uncompressed).
    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        if let zstdContext {
            let written = ZSTD_compress2(zstdContext, output.baseAddress, output.count, input.baseAddress, input.count)
            return ZSTD_isError(written) != 0 ? nil : written
        }
        guard let stream = zlibStream else { return nil }
        deflateReset(stream)
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        stream.pointee.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(output.count)
        let status = deflate(stream, Z_FINISH)
        guard status == Z_STREAM_END else { return nil }
        return output.count - Int(stream.pointee.avail_out)
    }
}
