import CToolboxShim

/// Read-only access to a squashfs image file through libsquashfuse (no mount, no privilege).
public final class SquashFSImage {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    let handle: OpaquePointer

    public init(path: String) throws(Failure) {
        var out: OpaquePointer?
        let status = tbx_sqfs_open(path, &out)
        guard status == 0, let out else {
            throw Failure(description: "\(path): not a readable squashfs image (libsquashfuse error \(status))")
        }
        handle = out
    }

    deinit { tbx_sqfs_close(handle) }

    public var inodeCount: Int { Int(tbx_sqfs_inode_count(handle)) }
    public var blockSize: Int { Int(tbx_sqfs_block_size(handle)) }
    /// The superblock's compressor id (1 gzip, 2 lzma, 3 lzo, 4 xz, 5 lz4, 6 zstd).
    public var compressionID: Int { Int(tbx_sqfs_compression(handle)) }

    /// The mode and size of the entry at an absolute path, or nil when there is none.
    public func entry(at path: String) throws(Failure) -> (mode: UInt32, size: UInt64)? {
        var found: Int32 = 0
        var mode: UInt32 = 0
        var size: UInt64 = 0
        let status = tbx_sqfs_lookup(handle, path, &found, &mode, &size)
        guard status == 0 else { throw Failure(description: "lookup of \(path) failed (libsquashfuse error \(status))") }
        return found != 0 ? (mode, size) : nil
    }

    /// The contents of a regular file.
    public func contents(of path: String) throws(Failure) -> [UInt8] {
        guard let entry = try entry(at: path) else { throw Failure(description: "\(path): no such file in the image") }
        var buffer = [UInt8](repeating: 0, count: Int(entry.size))
        let count = buffer.withUnsafeMutableBytes { tbx_sqfs_read(handle, path, $0.baseAddress, 0, entry.size) }
        guard count >= 0 else { throw Failure(description: "\(path): read failed") }
        return Array(buffer.prefix(Int(count)))
    }
}
