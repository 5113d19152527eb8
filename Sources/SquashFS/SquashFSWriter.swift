import Foundation
import ToolboxCore

/// Writes a squashfs 4.0 image into an open file: file data first (streamed, compressed on all
/// cores), then, given the finished tree, the metadata tables and the superblock.
///
///     let writer = try SquashFSWriter(fd: fd, path: path, options: options)
///     let id = writer.beginFile(size: n); try writer.append(bytes); try writer.endFile()
///     ... build a DirectoryTree whose file inodes name those ids ...
///     let summary = try writer.finish(tree: tree, modificationTime: time)
public final class SquashFSWriter {
    public struct Summary: Sendable, Equatable {
        /// The file's size, padding included.
        public var size: UInt64
        public var inodes: Int
        /// Regular files stored as references to an earlier file with the same content.
        public var duplicateFiles: Int
        public var fragmentBlocks: Int
    }

    private let fd: Int32
    private let path: String
    private let options: SquashFSOptions
    private let data: DataWriter
    private var finished = false

    public init(fd: Int32, path: String, options: SquashFSOptions) throws(Diagnostic) {
        guard SquashFSOptions.blockSizes.contains(options.blockSize), options.blockSize.nonzeroBitCount == 1 else {
            throw Diagnostic(kind: .invalid, message: "block size \(options.blockSize) is not a power of two from 4K to 1M")
        }
        guard options.compression.levels.contains(options.level) else {
            throw Diagnostic(kind: .invalid, message: "\(options.compression.rawValue) level \(options.level) is out of range \(options.compression.levels)")
        }
        self.fd = fd
        self.path = path
        self.options = options
        data = try DataWriter(fd: fd, path: path, start: UInt64(Format.superblockSize), options: options)
    }

    /// The largest file stored: 2^22 blocks (512 GiB with 128 KiB blocks). A file's list of block
    /// sizes is kept in memory (4 bytes a block) until the tables are written; a sparse file that
    /// claims more (its holes cost nothing to read) would fill the memory.
    public var largestFile: UInt64 { UInt64(options.blockSize) << 22 }

    /// Starts a regular file of `size` bytes; returns the id that its `InodeRecord` names.
    public func beginFile(size: UInt64) -> Int { data.beginFile(size: size) }

    public func append(_ bytes: UnsafeRawBufferPointer) throws(Diagnostic) { try data.append(bytes) }

    /// Appends a hole of `count` zero bytes.
    public func appendZeros(_ count: UInt64) throws(Diagnostic) { try data.appendZeros(count) }

    public func endFile() throws(Diagnostic) { try data.endFile() }

    /// Writes the tables and the superblock; the image is complete when this returns (not yet
    /// synced to disk: the caller decides).
    public func finish(tree: DirectoryTree, modificationTime: UInt32) throws(Diagnostic) -> Summary {
        finished = true
        let (layouts, fragments, dataEnd) = try data.finish()
        var options = options
        options.modificationTime = modificationTime
        guard let compressor = Compressor(options) else {
            throw Diagnostic(kind: .output, message: "cannot set up the \(options.compression.rawValue) compressor")
        }
        let writer = TableWriter(tree: tree, layouts: layouts, fragments: fragments, options: options, compressor: compressor)
        let result = try writer.write(dataEnd: dataEnd)
        try ImageFile.write(fd: fd, result.tables, at: dataEnd, path: path)
        try ImageFile.write(fd: fd, result.superblock, at: 0, path: path)
        let size = dataEnd + UInt64(result.tables.count)
        // Data of duplicate files written past the end before being taken back: cut it off.
        if ftruncate(fd, off_t(size)) != 0 {
            throw Diagnostic(kind: .output, file: path, message: "cannot set the image's size: \(String(cString: strerror(errno)))")
        }
        return Summary(size: size, inodes: result.inodeCount, duplicateFiles: data.duplicateFiles, fragmentBlocks: fragments.count)
    }

    /// Stops the compression threads when the image is being abandoned after an error.
    public func abandon() {
        if !finished { data.abandon() }
        finished = true
    }
}
