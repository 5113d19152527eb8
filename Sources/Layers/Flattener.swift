import Foundation
import SquashFS
import ToolboxCore

/// Flattens an image's layers into one squashfs in a single pass over each layer.
///
/// Layers are read from the top one down. An entry is kept only when no higher layer has
/// already decided its path: defined it, whited it out (`.wh.<name>`), made a parent opaque
/// (`.wh..wh..opq`), or put a non-directory on one of its parents. So only the data of files in
/// the final tree is compressed and written, and nothing is extracted to disk. The rare hard link
/// whose target a higher layer replaced is resolved by reading that layer a second time.
public final class Flattener {
    public struct Options: Sendable {
        /// Keep the owners recorded in the layers (default: everything owned by root, as enroot does).
        public var keepOwners = false
        /// Every timestamp, when set (SOURCE_DATE_EPOCH); else the layers' times, and the newest
        /// of them for directories that no layer describes and for the image itself.
        public var fixedTime: UInt32?

        public init() {}
    }

    /// Counts for the summary line.
    public struct Statistics: Sendable {
        public var entries = 0
        public var skipped = 0
        public var bytes: Int64 = 0
    }

    private enum State {
        case directory(inode: Int?)
        case inode(Int)
        case whiteout
    }

    private struct Node {
        var name: [UInt8]
        var state: State
        /// The layer that decided this path (the one that created an implicit directory).
        var layer: Int
        var children: [[UInt8]: Int] = [:]
        /// Children that come from layers below this one are hidden (an opaque directory).
        var opaqueAbove: Int = -1
        /// This layer whited the path out: lower layers' members for the path itself are hidden.
        var whitedOutAbove: Int = -1
        /// Created only on the way to a whiteout: not part of the tree unless something real lands here.
        var phantom = false

        var isDirectory: Bool {
            if case .directory = state { return true }
            return false
        }
    }

    private let writer: SquashFSWriter
    private let options: Options
    private let warn: (Diagnostic) -> Void
    private var nodes: [Node]
    private var inodes: [InodeRecord] = []
    public private(set) var statistics = Statistics()
    private var newestTime: UInt32 = 0
    /// The image's time: the fixed time, else the newest time in the layers.
    public var imageTime: UInt32 { options.fixedTime ?? newestTime }
    /// The layer whose "./" member gave the root its metadata.
    private var rootLayer: Int?
    private var warnedXattrPrefixes: Set<String> = []

    public init(writer: SquashFSWriter, options: Options, warn: @escaping (Diagnostic) -> Void) {
        self.writer = writer
        self.options = options
        self.warn = warn
        nodes = [Node(name: [], state: .directory(inode: nil), layer: Int.max, phantom: false)]
    }

    /// Adds the layers, given bottom first (the order of an image manifest).
    public func add(layers paths: [String], progress: (Int, String) -> Void = { _, _ in }) throws(Diagnostic) {
        for layer in stride(from: paths.count - 1, through: 0, by: -1) {
            progress(layer, paths[layer])
            try add(layer: layer, path: paths[layer])
        }
    }

    // MARK: One layer

    private struct PendingLink {
        var target: [[UInt8]]
        var nodes: [Int]
        var inode: Int
    }

    private func add(layer: Int, path: String) throws(Diagnostic) {
        let reader = TarReader(stream: try LayerStream(path: path))
        /// Members of this layer that a higher layer hid, by path: a hard link may need them.
        var hiddenFiles = Hidden()
        /// Hard links to such files, resolved by a second read of the layer.
        var pending: [[[UInt8]]: PendingLink] = [:]
        while let entry = try reader.next() {
            statistics.entries += 1
            let components = try normalize(entry.path, entry: entry, layer: path)
            if entry.kind != .directory, !components.isEmpty,
                entry.path.split(separator: UInt8(ascii: "/")).last.map({ $0.elementsEqual([UInt8(ascii: ".")]) }) == true
            {
                throw invalid(path, entry, "a name ending in '/.' names a directory, but this member is not one")
            }
            // aufs bookkeeping (.wh..wh.aufs, .wh..wh.orph/, .wh..wh.plnk/ and what is below
            // them): no meaning in an image, left out as Docker does. The opaque marker is not.
            if components.dropLast().contains(where: { $0.starts(with: Self.aufsPrefix) }) { continue }
            if let name = components.last, name.starts(with: Self.whiteoutPrefix) {
                try applyWhiteout(components, layer: layer, entry: entry, path: path)
                continue
            }
            if components.isEmpty {
                guard entry.kind == .directory else {
                    throw invalid(path, entry, "the root of the image is not a directory")
                }
                if rootLayer == nil || rootLayer == layer {
                    rootLayer = layer
                    setDirectoryMetadata(0, entry: entry, layer: layer, path: path)
                }
                continue
            }
            let replacedParent = { (name: [UInt8]) in
                self.warn(Diagnostic.warning(
                    file: path,
                    "member \(entry.index) '\(entry.displayPath)': its parent '\(String(decoding: name, as: UTF8.self))', not a directory earlier in the layer, becomes one (tar and umoci would refuse the member)"))
            }
            guard let parent = walk(components.dropLast(), layer: layer, forWhiteout: false, replacing: replacedParent) else {
                skip(entry, components, hidden: &hiddenFiles, path: path)
                continue
            }
            let name = components[components.count - 1]
            if nodes[parent].opaqueAbove > layer {
                skip(entry, components, hidden: &hiddenFiles, path: path)
                continue
            }
            if let existing = nodes[parent].children[name] {
                // A directory created implicitly (as a parent of a member of this or a higher
                // layer) takes its metadata from the highest layer that describes it.
                if case .directory(inode: nil) = nodes[existing].state, entry.kind == .directory {
                    // ... unless a whiteout above this layer removed this layer's directory.
                    if nodes[existing].whitedOutAbove <= layer { setDirectoryMetadata(existing, entry: entry, layer: layer, path: path) }
                    continue
                }
                if nodes[existing].layer > layer {
                    // A higher layer decided this path. When that is a directory and this layer
                    // has a non-directory here, this layer replaced the lower layers' directory:
                    // none of their members below it show through the higher one, nor this
                    // layer's own earlier members there.
                    if entry.kind != .directory, nodes[existing].isDirectory {
                        nodes[existing].opaqueAbove = max(nodes[existing].opaqueAbove, layer)
                        prune(existing, layer: layer)
                        if entry.kind == .symbolicLink, case .directory(inode: nil) = nodes[existing].state {
                            warn(Diagnostic.warning(
                                file: path,
                                "member \(entry.index) '\(entry.displayPath)', a symbolic link, is hidden by the directory that a higher layer's members below it imply (as with enroot's overlay; docker and umoci put those members where the link points)"))
                        }
                    }
                    skip(entry, components, hidden: &hiddenFiles, path: path)
                    continue
                }
                // The same layer names the path again (or whited it out first, for lower
                // layers): the later member wins, as when extracting.
                let replacesWhiteout: Bool
                if case .whiteout = nodes[existing].state { replacesWhiteout = true } else { replacesWhiteout = false }
                if !replacesWhiteout && !nodes[existing].phantom {
                    warn(Diagnostic.warning(file: path, "member \(entry.index) '\(entry.displayPath)' appears again in the layer; the later one is kept"))
                }
                if entry.kind == .directory, nodes[existing].isDirectory {
                    setDirectoryMetadata(existing, entry: entry, layer: layer, path: path)
                    continue
                }
                if entry.kind != .directory, nodes[existing].isDirectory {
                    // This layer's directory (maybe one a higher layer's members imply, which this
                    // layer described) replaced by a non-directory: this layer's earlier members
                    // below it go; what higher layers put there keeps the directory.
                    prune(existing, layer: layer)
                    if !nodes[existing].children.isEmpty {
                        nodes[existing].opaqueAbove = max(nodes[existing].opaqueAbove, layer)
                        skip(entry, components, hidden: &hiddenFiles, path: path)
                        continue
                    }
                }
                // A whiteout, or a non-directory, of this layer replaced by a directory: nothing of
                // the lower layers' directory shows through.
                let hidesBelow = replacesWhiteout || !nodes[existing].isDirectory
                nodes[existing].children = [:]
                nodes[existing].opaqueAbove = hidesBelow ? layer : -1
                nodes[existing].whitedOutAbove = hidesBelow ? layer : -1
                try define(existing, entry: entry, layer: layer, components: components, reader: reader, path: path, pending: &pending, hidden: &hiddenFiles)
                continue
            }
            let node = nodes.count
            nodes.append(Node(name: name, state: .whiteout, layer: layer))
            nodes[parent].children[name] = node
            try define(node, entry: entry, layer: layer, components: components, reader: reader, path: path, pending: &pending, hidden: &hiddenFiles)
        }
        try reader.readToEnd()
        if !pending.isEmpty { try resolveHiddenLinks(pending, layer: layer, path: path) }
    }

    /// Removes what `layer` put below `node` before a later member of the same layer replaced
    /// `node` with a non-directory (as extracting would); what higher layers put there stays.
    private func prune(_ node: Int, layer: Int) {
        for (name, child) in nodes[node].children {
            if nodes[child].isDirectory {
                prune(child, layer: layer)
                if nodes[child].layer == layer && nodes[child].children.isEmpty { nodes[node].children[name] = nil }
            } else if nodes[child].layer == layer {
                nodes[node].children[name] = nil
            }
        }
    }

    private static let whiteoutPrefix = Array(".wh.".utf8)
    private static let aufsPrefix = Array(".wh..wh.".utf8)
    private static let opaqueMarker = Array(".wh..wh..opq".utf8)

    /// A layer's members that a higher layer hid: regular files (their data is read again when a
    /// hard link of the layer needs it), and the inodes of the others, kept as they are.
    private struct Hidden {
        var files: Set<[[UInt8]]> = []
        var others: [[[UInt8]]: InodeRecord] = [:]
        /// Inodes made for hidden non-files that hard links named.
        var made: [[[UInt8]]: Int] = [:]
        /// Hidden hard links, by path: their targets (a later link may name the hidden link).
        var links: [[[UInt8]]: [[UInt8]]] = [:]
    }

    private func skip(_ entry: TarEntry, _ components: [[UInt8]], hidden: inout Hidden, path: String) {
        statistics.skipped += 1
        switch entry.kind {
        case .regular: hidden.files.insert(components)
        case .symbolicLink where !entry.linkTarget.isEmpty:
            hidden.others[components] = metadata(entry, kind: .symlink(target: entry.linkTarget), path: path)
        case .characterDevice:
            hidden.others[components] = metadata(entry, kind: .characterDevice(major: entry.deviceMajor, minor: entry.deviceMinor), path: path)
        case .blockDevice:
            hidden.others[components] = metadata(entry, kind: .blockDevice(major: entry.deviceMajor, minor: entry.deviceMinor), path: path)
        case .fifo: hidden.others[components] = metadata(entry, kind: .fifo, path: path)
        case .hardLink:
            if let target = try? normalize(entry.linkTarget, entry: entry, layer: path) { hidden.links[components] = target }
        default: break
        }
    }

    private func invalid(_ path: String, _ entry: TarEntry, _ message: String, hint: String? = nil) -> Diagnostic {
        Diagnostic(kind: .invalid, file: path, message: "member \(entry.index) '\(entry.displayPath)': \(message)", hint: hint)
    }

    /// Path components without "." and empty parts; "..", absolute paths and over-long names are errors.
    private func normalize(_ raw: [UInt8], entry: TarEntry, layer path: String) throws(Diagnostic) -> [[UInt8]] {
        // "/" alone is the root directory (umoci writes its entry so, as "./" from others).
        if raw.first == UInt8(ascii: "/") && !raw.allSatisfy({ $0 == UInt8(ascii: "/") }) {
            throw invalid(path, entry, "absolute path", hint: "layer members are relative to the image's root; this layer was not made by an image builder")
        }
        var components: [[UInt8]] = []
        for part in raw.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            if part.count == 2 && part.allSatisfy({ $0 == UInt8(ascii: ".") }) {
                throw invalid(path, entry, "the path contains '..'", hint: "a layer must not name paths outside the image's root")
            }
            if part.contains(0) {
                throw invalid(path, entry, "the name contains a NUL byte", hint: "Linux file names cannot contain NUL; the layer is damaged")
            }
            guard part.count <= 255 else {
                throw invalid(path, entry, "a name of \(part.count) bytes is longer than 255 bytes", hint: "squashfs and Linux allow names of up to 255 bytes")
            }
            components.append(Array(part))
        }
        return components
    }

    /// Follows (and creates, as implicit directories) the parents of a path for a member of
    /// `layer`; nil when a higher layer hides the path.
    /// `replacing` is told when this layer's own non-directory member is made a directory.
    private func walk(
        _ components: ArraySlice<[UInt8]>, layer: Int, forWhiteout: Bool, replacing: ([UInt8]) -> Void = { _ in }
    ) -> Int? {
        var node = 0
        for name in components {
            if nodes[node].opaqueAbove > layer { return nil }
            if let child = nodes[node].children[name] {
                switch nodes[child].state {
                case .directory:
                    if !forWhiteout { nodes[child].phantom = false }
                    node = child
                    continue
                case .whiteout, .inode:
                    if nodes[child].layer > layer { return nil }
                    // A whiteout below this layer's own non-directory deletes nothing (umoci 0.4
                    // writes `d/.wh.x` after a file `d` that replaced the directory d): ignored,
                    // as umoci and Docker ignore it, not a reason to make `d` a directory.
                    if forWhiteout, case .inode = nodes[child].state { return nil }
                    // This layer replaces its own member with a directory; after its own whiteout,
                    // nothing of the lower layers' directory shows through.
                    let whiteout: Bool
                    if case .whiteout = nodes[child].state { whiteout = true } else { whiteout = false }
                    if !whiteout { replacing(name) }
                    nodes[child] = Node(name: name, state: .directory(inode: nil), layer: layer, phantom: forWhiteout)
                    if whiteout {
                        nodes[child].opaqueAbove = layer
                        nodes[child].whitedOutAbove = layer
                    }
                    node = child
                }
            } else {
                let child = nodes.count
                nodes.append(Node(name: name, state: .directory(inode: nil), layer: layer, phantom: forWhiteout))
                nodes[node].children[name] = child
                node = child
            }
        }
        return node
    }

    private func applyWhiteout(_ components: [[UInt8]], layer: Int, entry: TarEntry, path: String) throws(Diagnostic) {
        guard let parent = walk(components.dropLast(), layer: layer, forWhiteout: true) else { return }
        let name = components[components.count - 1]
        if name == Self.opaqueMarker {
            nodes[parent].opaqueAbove = max(nodes[parent].opaqueAbove, layer)
            return
        }
        if name.starts(with: Self.aufsPrefix) { return }  // aufs bookkeeping, no meaning here
        let target = Array(name.dropFirst(Self.whiteoutPrefix.count))
        guard !target.isEmpty else { throw invalid(path, entry, "a whiteout without a name") }
        if nodes[parent].opaqueAbove > layer { return }
        if let existing = nodes[parent].children[target] {
            // A directory of a higher layer stays, but what lower layers had there is gone. A
            // non-directory was decided by a higher layer or is this layer's own member.
            if nodes[existing].isDirectory && nodes[existing].layer >= layer {
                nodes[existing].opaqueAbove = max(nodes[existing].opaqueAbove, layer)
                nodes[existing].whitedOutAbove = max(nodes[existing].whitedOutAbove, layer)
            }
            return
        }
        let node = nodes.count
        nodes.append(Node(name: target, state: .whiteout, layer: layer))
        nodes[parent].children[target] = node
    }

    private func metadata(_ entry: TarEntry, kind: InodeRecord.Kind, path: String) -> InodeRecord {
        var xattrs: [Xattr] = []
        for (name, value) in entry.xattrs {
            let attribute = Xattr(name: name, value: value)
            let shown = String(decoding: name, as: UTF8.self)
            if value.count > 65536 {
                // Linux reads no value larger (XATTR_SIZE_MAX): stored, it would fail every read.
                warn(Diagnostic.warning(file: path, "member '\(entry.displayPath)': the extended attribute \(shown) of \(value.count) bytes is larger than Linux's 65536 and is left out"))
            } else if attribute.isStorable {
                xattrs.append(attribute)
            } else if attribute.isPrefixAlone {
                warn(Diagnostic.warning(file: path, "member '\(entry.displayPath)': an extended attribute named only '\(shown)' is left out"))
            } else {
                let prefix = String(decoding: name.prefix { $0 != UInt8(ascii: ".") }, as: UTF8.self)
                if warnedXattrPrefixes.insert(prefix).inserted {
                    warn(Diagnostic.warning(file: path, "extended attributes in the '\(prefix).' namespace cannot be stored in squashfs and are left out (first: member '\(entry.displayPath)')"))
                }
            }
        }
        let time = options.fixedTime ?? UInt32(clamping: max(0, entry.mtime))
        newestTime = max(newestTime, time)
        // A symbolic link's mode means nothing on Linux: 0777, as umoci and mksquashfs store it.
        let permissions: UInt16
        if case .symlink = kind { permissions = 0o777 } else { permissions = UInt16(entry.mode & 0o7777) }
        return InodeRecord(
            kind: kind, permissions: permissions, uid: options.keepOwners ? entry.uid : 0,
            gid: options.keepOwners ? entry.gid : 0, mtime: time, xattrs: xattrs.sorted())
    }

    private func setDirectoryMetadata(_ node: Int, entry: TarEntry, layer: Int, path: String) {
        let record = metadata(entry, kind: .directory, path: path)
        nodes[node].phantom = false
        if case .directory(inode: let existing?) = nodes[node].state, nodes[node].layer == layer || node == 0 {
            inodes[existing] = record
        } else {
            inodes.append(record)
            nodes[node].state = .directory(inode: inodes.count - 1)
        }
        if node != 0 { nodes[node].layer = layer }
    }

    private func define(
        _ node: Int, entry: TarEntry, layer: Int, components: [[UInt8]], reader: TarReader, path: String,
        pending: inout [[[UInt8]]: PendingLink], hidden: inout Hidden
    ) throws(Diagnostic) {
        nodes[node].layer = layer
        nodes[node].phantom = false
        switch entry.kind {
        case .directory:
            nodes[node].state = .directory(inode: nil)
            setDirectoryMetadata(node, entry: entry, layer: layer, path: path)
        case .regular:
            let id = try copyData(entry, reader: reader, layer: path)
            inodes.append(metadata(entry, kind: .file(id: id), path: path))
            nodes[node].state = .inode(inodes.count - 1)
        case .symbolicLink:
            guard !entry.linkTarget.isEmpty else { throw invalid(path, entry, "a symbolic link with an empty target") }
            guard entry.linkTarget.count <= 4095, !entry.linkTarget.contains(0) else {
                throw invalid(
                    path, entry,
                    entry.linkTarget.contains(0)
                        ? "the symbolic link's target contains a NUL byte"
                        : "a symbolic link target of \(entry.linkTarget.count) bytes is longer than 4095 bytes",
                    hint: "Linux and squashfs take link targets of up to 4095 bytes, without NUL")
            }
            inodes.append(metadata(entry, kind: .symlink(target: entry.linkTarget), path: path))
            nodes[node].state = .inode(inodes.count - 1)
        case .characterDevice:
            try checkDevice(entry, path: path)
            inodes.append(metadata(entry, kind: .characterDevice(major: entry.deviceMajor, minor: entry.deviceMinor), path: path))
            nodes[node].state = .inode(inodes.count - 1)
        case .blockDevice:
            try checkDevice(entry, path: path)
            inodes.append(metadata(entry, kind: .blockDevice(major: entry.deviceMajor, minor: entry.deviceMinor), path: path))
            nodes[node].state = .inode(inodes.count - 1)
        case .fifo:
            inodes.append(metadata(entry, kind: .fifo, path: path))
            nodes[node].state = .inode(inodes.count - 1)
        case .hardLink:
            var target = try normalize(entry.linkTarget, entry: entry, layer: path)
            // A link to an earlier link that a higher layer hid is a link to that link's target.
            var steps = 0
            while let next = hidden.links[target], steps < hidden.links.count {
                target = next
                steps += 1
            }
            let targetNode = lookup(target)
            if let targetNode, nodes[targetNode].layer == layer, case .inode(let inode) = nodes[targetNode].state {
                nodes[node].state = .inode(inode)
            } else if let record = hidden.others[target] {
                // This layer's symbolic link, device or fifo that a higher layer replaced.
                if let made = hidden.made[target] {
                    nodes[node].state = .inode(made)
                } else {
                    inodes.append(record)
                    hidden.made[target] = inodes.count - 1
                    nodes[node].state = .inode(inodes.count - 1)
                }
            } else if hidden.files.contains(target) {
                // The target is this layer's file that a higher layer replaced: read it again later.
                if let existing = pending[target] {
                    pending[target]?.nodes.append(node)
                    nodes[node].state = .inode(existing.inode)
                } else {
                    inodes.append(metadata(entry, kind: .file(id: -1), path: path))
                    pending[target] = PendingLink(target: target, nodes: [node], inode: inodes.count - 1)
                    nodes[node].state = .inode(inodes.count - 1)
                }
            } else if let targetNode, nodes[targetNode].isDirectory {
                throw invalid(path, entry, "a hard link to the directory '\(String(decoding: entry.linkTarget, as: UTF8.self))'")
            } else {
                throw invalid(
                    path, entry, "a hard link to '\(String(decoding: entry.linkTarget, as: UTF8.self))', which is not an earlier member of this layer",
                    hint: "a hard link must follow its target in the same layer")
            }
        }
    }

    /// squashfs keeps a device number as Linux's 32-bit encoding: 12 bits of major, 20 of minor.
    private func checkDevice(_ entry: TarEntry, path: String) throws(Diagnostic) {
        guard entry.deviceMajor <= 0xFFF, entry.deviceMinor <= 0xF_FFFF else {
            throw invalid(
                path, entry, "the device number \(entry.deviceMajor):\(entry.deviceMinor) does not fit squashfs",
                hint: "squashfs keeps majors up to 4095 and minors up to 1048575, as Linux does")
        }
    }

    private func lookup(_ components: [[UInt8]]) -> Int? {
        var node = 0
        for name in components {
            guard let child = nodes[node].children[name] else { return nil }
            node = child
        }
        return node
    }

    private func copyData(_ entry: TarEntry, reader: TarReader, layer path: String) throws(Diagnostic) -> Int {
        guard entry.size <= 0 || UInt64(entry.size) <= writer.largestFile else {
            throw invalid(
                path, entry, "a file of \(entry.size) bytes is larger than the \(writer.largestFile >> 30) GiB that img-squash stores with this block size",
                hint: entry.sparseMap == nil ? "a larger --block-size raises the limit" : "the sparse file's size is implausible: rebuild the layer")
        }
        let id = writer.beginFile(size: UInt64(max(0, entry.size)))
        statistics.bytes += entry.size
        if let map = entry.sparseMap {
            var position: Int64 = 0
            var runIndex = 0
            var runLeft: Int64 = map.first?.length ?? 0
            if let first = map.first, first.offset > 0 {
                try writer.appendZeros(UInt64(first.offset))
                position = first.offset
            }
            try reader.readData { (chunk) throws(Diagnostic) in
                var chunk = chunk
                while !chunk.isEmpty {
                    while runLeft == 0 && runIndex + 1 < map.count {
                        runIndex += 1
                        if map[runIndex].offset > position {
                            try writer.appendZeros(UInt64(map[runIndex].offset - position))
                            position = map[runIndex].offset
                        }
                        runLeft = map[runIndex].length
                    }
                    let step = Int(min(Int64(chunk.count), runLeft))
                    try writer.append(UnsafeRawBufferPointer(rebasing: chunk[0..<step]))
                    chunk = UnsafeRawBufferPointer(rebasing: chunk[step...])
                    runLeft -= Int64(step)
                    position += Int64(step)
                }
            }
            if entry.size > position { try writer.appendZeros(UInt64(entry.size - position)) }
        } else {
            try reader.readData { (chunk) throws(Diagnostic) in try writer.append(chunk) }
        }
        try writer.endFile()
        return id
    }

    private func resolveHiddenLinks(_ pending: [[[UInt8]]: PendingLink], layer: Int, path: String) throws(Diagnostic) {
        var left = pending
        let reader = TarReader(stream: try LayerStream(path: path))
        while let entry = try reader.next(), !left.isEmpty {
            guard entry.kind == .regular else { continue }
            let components = try normalize(entry.path, entry: entry, layer: path)
            guard let link = left.removeValue(forKey: components) else { continue }
            let id = try copyData(entry, reader: reader, layer: path)
            inodes[link.inode] = metadata(entry, kind: .file(id: id), path: path)
        }
        if let missing = left.keys.sorted(by: { $0.joined().lexicographicallyPrecedes($1.joined()) }).first {
            let name = missing.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
            throw Diagnostic(kind: .invalid, file: path, message: "a hard link names '\(name)', which the second read of the layer did not find")
        }
    }

    // MARK: The result

    /// The final tree: whiteouts and phantom directories left out, children sorted by name.
    public func tree() -> DirectoryTree {
        var output: [DirectoryTree.Node] = []
        var records = inodes
        func inode(of index: Int) -> Int {
            switch nodes[index].state {
            case .directory(inode: let inode?):
                return inode
            case .inode(let inode):
                return inode
            case .directory(inode: nil), .whiteout:
                records.append(InodeRecord(kind: .directory, permissions: 0o755, uid: 0, gid: 0, mtime: imageTime))
                return records.count - 1
            }
        }
        output.append(DirectoryTree.Node(name: [], inode: inode(of: 0)))
        var queue: [(source: Int, target: Int)] = [(0, 0)]
        var head = 0
        while head < queue.count {
            let (source, target) = queue[head]
            head += 1
            let children = nodes[source].children.values.filter { child in
                if case .whiteout = nodes[child].state { return false }
                return !nodes[child].phantom
            }.sorted { nodes[$0].name.lexicographicallyPrecedes(nodes[$1].name) }
            var list: [Int] = []
            list.reserveCapacity(children.count)
            for child in children {
                output.append(DirectoryTree.Node(name: nodes[child].name, inode: inode(of: child)))
                list.append(output.count - 1)
                if nodes[child].isDirectory { queue.append((child, output.count - 1)) }
            }
            output[target].children = list
        }
        return DirectoryTree(nodes: output, inodes: records)
    }
}
