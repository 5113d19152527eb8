import ToolboxCore

/// Writes the inode, directory, fragment, id and xattr tables after the data, then the superblock.
struct TableWriter {
    let tree: DirectoryTree
    let layouts: [FileLayout]
    let fragments: [FragmentEntry]
    let options: SquashFSOptions
    let compressor: Compressor

    struct Result {
        /// The bytes after the data, and where the superblock says each table starts.
        var tables: [UInt8]
        var superblock: [UInt8]
        var inodeCount: Int
    }

    private struct Placement {
        var number: UInt32 = 0
        var reference: UInt64 = 0
        var type: Format.InodeType = .directory
        var written = false
    }

    func write(dataEnd: UInt64) throws(Diagnostic) -> Result {
        let nodes = tree.nodes
        let inodes = tree.inodes

        // Link counts: names per inode; directories: 2 + subdirectories.
        var links = [UInt32](repeating: 0, count: inodes.count)
        for node in nodes { links[node.inode] += 1 }
        for node in nodes where inodes[node.inode].isDirectory {
            links[node.inode] = 2 + UInt32(node.children.filter { inodes[nodes[$0].inode].isDirectory }.count)
        }

        // Inode numbers in the order inodes are written: a directory's children (each
        // subdirectory's subtree first), then the directory; the root comes last.
        var placements = [Placement](repeating: Placement(), count: inodes.count)
        var nextNumber: UInt32 = 1
        var parentNumber = [UInt32](repeating: 0, count: nodes.count)
        var order: [Int] = []  // nodes whose inode is written, in writing order
        order.reserveCapacity(nodes.count)
        // An explicit stack instead of recursion: trees can be deep.
        var stack: [(node: Int, next: Int)] = [(0, 0)]
        while var top = stack.popLast() {
            let children = nodes[top.node].children
            if top.next < children.count {
                let child = children[top.next]
                top.next += 1
                stack.append(top)
                if inodes[nodes[child].inode].isDirectory {
                    stack.append((child, 0))
                } else if placements[nodes[child].inode].number == 0 {
                    placements[nodes[child].inode].number = nextNumber
                    nextNumber += 1
                    order.append(child)
                }
                continue
            }
            placements[nodes[top.node].inode].number = nextNumber
            nextNumber += 1
            order.append(top.node)
        }
        for node in nodes where inodes[node.inode].isDirectory {
            for child in node.children where inodes[nodes[child].inode].isDirectory {
                parentNumber[child] = placements[node.inode].number
            }
        }
        let inodeCount = Int(nextNumber - 1)

        var ids: [UInt32] = []
        var idIndex: [UInt32: UInt16] = [:]
        func id(_ value: UInt32) throws(Diagnostic) -> UInt16 {
            if let index = idIndex[value] { return index }
            // The superblock counts them in 16 bits.
            guard ids.count < 65535 else {
                throw Diagnostic(kind: .invalid, message: "more than 65535 distinct user and group ids", hint: "leave out --keep-owners")
            }
            idIndex[value] = UInt16(ids.count)
            ids.append(value)
            return UInt16(ids.count - 1)
        }

        var xattrSets: [[Xattr]: UInt32] = [:]
        var xattrOrder: [[Xattr]] = []
        func xattrIndex(_ set: [Xattr]) -> UInt32 {
            if set.isEmpty { return Format.invalidXattr }
            if let index = xattrSets[set] { return index }
            xattrSets[set] = UInt32(xattrOrder.count)
            xattrOrder.append(set)
            return UInt32(xattrOrder.count - 1)
        }

        var inodeTable = MetadataStream(compressor: compressor)
        var directoryTable = MetadataStream(compressor: compressor)

        for nodeIndex in order {
            let node = nodes[nodeIndex]
            let record = inodes[node.inode]
            var placement = placements[node.inode]
            guard !placement.written else { continue }
            var body = ByteBuffer(capacity: 64)
            let xattr = xattrIndex(record.xattrs)
            let extended = xattr != Format.invalidXattr
            let type: Format.InodeType
            switch record.kind {
            case .directory:
                // The listing first: its place goes into the inode.
                let listingStart = directoryTable.blockStart
                let listingOffset = directoryTable.offsetInBlock
                let before = directoryTable.uncompressedCount
                let index = writeListing(node.children, nodes: nodes, placements: placements, into: &directoryTable)
                let size = UInt32(directoryTable.uncompressedCount - before) + 3
                if extended || size > 0xFFFF || !index.isEmpty {
                    type = .extendedDirectory
                    body.u32(links[node.inode])
                    body.u32(size)
                    body.u32(listingStart)
                    body.u32(parentNumber[nodeIndex])
                    body.u16(UInt16(index.count))
                    body.u16(listingOffset)
                    body.u32(xattr)
                    for entry in index {
                        body.u32(entry.offset)
                        body.u32(entry.block)
                        body.u32(UInt32(entry.name.count - 1))
                        body.append(entry.name)
                    }
                } else {
                    type = .directory
                    body.u32(listingStart)
                    body.u32(links[node.inode])
                    body.u16(UInt16(size))
                    body.u16(listingOffset)
                    body.u32(parentNumber[nodeIndex])
                }
            case .file(let id):
                let layout = id < layouts.count ? layouts[id] : FileLayout()
                if extended || links[node.inode] > 1 || layout.size > 0xFFFF_FFFF || layout.blocksStart > 0xFFFF_FFFF
                    || layout.sparse > 0
                {
                    type = .extendedFile
                    body.u64(layout.blocksStart)
                    body.u64(layout.size)
                    body.u64(layout.sparse)
                    body.u32(links[node.inode])
                    body.u32(layout.fragment)
                    body.u32(layout.fragmentOffset)
                    body.u32(xattr)
                } else {
                    type = .file
                    body.u32(UInt32(layout.blocksStart))
                    body.u32(layout.fragment)
                    body.u32(layout.fragmentOffset)
                    body.u32(UInt32(layout.size))
                }
                for size in layout.blockSizes { body.u32(size) }
            case .symlink(let target):
                type = extended ? .extendedSymlink : .symlink
                body.u32(links[node.inode])
                body.u32(UInt32(target.count))
                body.append(target)
                if extended { body.u32(xattr) }
            case .blockDevice(let major, let minor), .characterDevice(let major, let minor):
                let block: Bool
                if case .blockDevice = record.kind { block = true } else { block = false }
                type = block ? (extended ? .extendedBlockDevice : .blockDevice) : (extended ? .extendedCharacterDevice : .characterDevice)
                body.u32(links[node.inode])
                body.u32(Format.encodeDevice(major: major, minor: minor))
                if extended { body.u32(xattr) }
            case .fifo, .socket:
                let fifo = record.kind == .fifo
                type = fifo ? (extended ? .extendedFifo : .fifo) : (extended ? .extendedSocket : .socket)
                body.u32(links[node.inode])
                if extended { body.u32(xattr) }
            }
            var header = ByteBuffer(capacity: 16)
            header.u16(type.rawValue)
            header.u16(record.permissions & 0o7777)
            header.u16(try id(record.uid))
            header.u16(try id(record.gid))
            header.u32(record.mtime)
            header.u32(placement.number)
            placement.reference = inodeTable.reference
            placement.type = type
            placement.written = true
            placements[node.inode] = placement
            inodeTable.append(header.bytes)
            inodeTable.append(body.bytes)
        }
        inodeTable.finish()
        directoryTable.finish()

        // Layout after the data: inode table, directory table, fragment table, id table, xattrs.
        var tables = ByteBuffer(capacity: inodeTable.output.count + directoryTable.output.count + 4096)
        let inodeTableStart = dataEnd
        tables.append(inodeTable.output)
        let directoryTableStart = dataEnd + UInt64(tables.count)
        tables.append(directoryTable.output)

        var fragmentTableStart = Format.invalidTable
        if !fragments.isEmpty {
            var entries = ByteBuffer(capacity: fragments.count * 16)
            for fragment in fragments {
                entries.u64(fragment.start)
                entries.u32(fragment.size)
                entries.u32(0)
            }
            fragmentTableStart = lookupTable(entries.bytes, dataEnd: dataEnd, into: &tables)
        }

        var idEntries = ByteBuffer(capacity: ids.count * 4)
        for value in ids { idEntries.u32(value) }
        let idTableStart = lookupTable(idEntries.bytes, dataEnd: dataEnd, into: &tables)

        var xattrTableStart = Format.invalidTable
        if !xattrOrder.isEmpty {
            var pairs = MetadataStream(compressor: compressor)
            var lookup = ByteBuffer(capacity: xattrOrder.count * 16)
            for set in xattrOrder {
                let reference = pairs.reference
                let before = pairs.uncompressedCount
                for attribute in set {
                    guard let prefix = Format.xattrPrefixes.first(where: { attribute.name.starts(with: $0.prefix) }) else { continue }
                    var entry = ByteBuffer(capacity: attribute.name.count + attribute.value.count + 8)
                    let name = Array(attribute.name.dropFirst(prefix.prefix.count))
                    entry.u16(prefix.id)
                    entry.u16(UInt16(name.count))
                    entry.append(name)
                    entry.u32(UInt32(attribute.value.count))
                    entry.append(attribute.value)
                    pairs.append(entry.bytes)
                }
                lookup.u64(reference)
                lookup.u32(UInt32(set.count))
                lookup.u32(UInt32(pairs.uncompressedCount - before))
            }
            pairs.finish()
            let pairsStart = dataEnd + UInt64(tables.count)
            tables.append(pairs.output)
            var lookupStream = MetadataStream(compressor: compressor)
            lookupStream.append(lookup.bytes)
            lookupStream.finish()
            let lookupStart = dataEnd + UInt64(tables.count)
            tables.append(lookupStream.output)
            xattrTableStart = dataEnd + UInt64(tables.count)
            tables.u64(pairsStart)
            tables.u32(UInt32(xattrOrder.count))
            tables.u32(0)
            for start in lookupStream.blockStarts { tables.u64(lookupStart + UInt64(start)) }
        }

        let bytesUsed = dataEnd + UInt64(tables.count)
        let padding = (Format.devicePadding - Int(bytesUsed % UInt64(Format.devicePadding))) % Format.devicePadding
        tables.append([UInt8](repeating: 0, count: padding))

        var flags: Format.Flags = [.alwaysFragments, .duplicates]
        if xattrOrder.isEmpty { flags.insert(.noXattrs) }
        if options.compression == .none {
            flags.formUnion([.uncompressedInodes, .uncompressedData, .uncompressedFragments, .uncompressedXattrs, .uncompressedIDs])
        }
        let rootInode = tree.nodes[0].inode
        var superblock = ByteBuffer(capacity: Format.superblockSize)
        superblock.u32(Format.magic)
        superblock.u32(UInt32(inodeCount))
        superblock.u32(options.modificationTime)
        superblock.u32(UInt32(options.blockSize))
        superblock.u32(UInt32(fragments.count))
        superblock.u16(options.compression == .zstd ? Format.Compressor.zstd.rawValue : Format.Compressor.gzip.rawValue)
        superblock.u16(UInt16(options.blockSize.trailingZeroBitCount))
        superblock.u16(flags.rawValue)
        superblock.u16(UInt16(ids.count))
        superblock.u16(4)
        superblock.u16(0)
        superblock.u64(placements[rootInode].reference)
        superblock.u64(bytesUsed)
        superblock.u64(idTableStart)
        superblock.u64(xattrTableStart)
        superblock.u64(inodeTableStart)
        superblock.u64(directoryTableStart)
        superblock.u64(fragmentTableStart)
        superblock.u64(Format.invalidTable)  // no NFS export table
        return Result(tables: tables.bytes, superblock: superblock.bytes, inodeCount: inodeCount)
    }

    /// Writes a table as metadata blocks followed by the list of their positions; returns the
    /// position of that list (what the superblock records).
    private func lookupTable(_ entries: [UInt8], dataEnd: UInt64, into tables: inout ByteBuffer) -> UInt64 {
        var stream = MetadataStream(compressor: compressor)
        stream.append(entries)
        stream.finish()
        let start = dataEnd + UInt64(tables.count)
        tables.append(stream.output)
        let listStart = dataEnd + UInt64(tables.count)
        for block in stream.blockStarts { tables.u64(start + UInt64(block)) }
        return listStart
    }

    /// One entry of a directory's index: where a run of entries starts in a new metadata block
    /// (offset from the listing's start, and the block), and the name of its first entry.
    struct IndexEntry {
        var offset: UInt32
        var block: UInt32
        var name: [UInt8]
    }

    /// A directory's entries: runs of at most 256 entries whose inodes share a metadata block and
    /// whose numbers lie within 32767 of the run's header. A run also ends where the listing
    /// crosses into the next metadata block, and each block's first run gets an index entry, so
    /// that the kernel and squashfuse find a name in a large directory without reading all of it.
    private func writeListing(
        _ children: [Int], nodes: [DirectoryTree.Node], placements: [Placement], into table: inout MetadataStream
    ) -> [IndexEntry] {
        var index: [IndexEntry] = []
        let listingStart = table.uncompressedCount
        var indexedBlock = -1
        var position = 0
        while position < children.count {
            let first = placements[nodes[children[position]].inode]
            let block = UInt32(truncatingIfNeeded: first.reference >> 16)
            let runStart = table.uncompressedCount
            let boundary = (runStart / Format.metadataBlockSize + 1) * Format.metadataBlockSize
            var end = position
            var runEnd = runStart + 12
            while end < children.count && end - position < Format.directoryRunLength {
                let placement = placements[nodes[children[end]].inode]
                if UInt32(truncatingIfNeeded: placement.reference >> 16) != block { break }
                if abs(Int(placement.number) - Int(first.number)) > 32767 { break }
                runEnd += 8 + nodes[children[end]].name.count
                end += 1
                if runEnd >= boundary { break }
            }
            if runStart / Format.metadataBlockSize != indexedBlock && runStart > listingStart {
                index.append(IndexEntry(offset: UInt32(runStart - listingStart), block: table.blockStart, name: nodes[children[position]].name))
            }
            indexedBlock = runStart / Format.metadataBlockSize
            var run = ByteBuffer(capacity: 12 + (end - position) * 24)
            run.u32(UInt32(end - position - 1))
            run.u32(block)
            run.u32(first.number)
            for child in children[position..<end] {
                let placement = placements[nodes[child].inode]
                run.u16(UInt16(truncatingIfNeeded: placement.reference & 0xFFFF))
                run.u16(UInt16(bitPattern: Int16(Int(placement.number) - Int(first.number))))
                run.u16(placement.type.basic.rawValue)
                run.u16(UInt16(nodes[child].name.count - 1))
                run.append(nodes[child].name)
            }
            table.append(run.bytes)
            position = end
        }
        return index
    }
}
