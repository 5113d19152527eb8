/// The file tree that the table writer turns into inodes and directory listings.

/// An extended attribute: its full name (`user.x`, `security.capability`) and value.
public struct Xattr: Hashable, Sendable, Comparable {
    public var name: [UInt8]
    public var value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public static func < (a: Xattr, b: Xattr) -> Bool { a.name.lexicographicallyPrecedes(b.name) }

    /// Whether squashfs can store the name (the user., trusted. and security. namespaces).
    public var isStorable: Bool {
        Format.xattrPrefixes.contains { name.count > $0.prefix.count && name.starts(with: $0.prefix) }
    }

    /// A name that is a storable namespace's prefix and nothing after it (`user.`).
    public var isPrefixAlone: Bool { Format.xattrPrefixes.contains { name.elementsEqual($0.prefix) } }
}

/// One inode: what it is and its metadata. Hard links are several tree nodes naming one inode.
public struct InodeRecord: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case directory
        /// A regular file whose data the `DataWriter` stored under this id.
        case file(id: Int)
        case symlink(target: [UInt8])
        case blockDevice(major: UInt32, minor: UInt32)
        case characterDevice(major: UInt32, minor: UInt32)
        case fifo
        case socket
    }

    public var kind: Kind
    /// Permission bits with setuid, setgid and sticky (mode & 0o7777).
    public var permissions: UInt16
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: UInt32
    /// Sorted by name; only storable names.
    public var xattrs: [Xattr]

    public init(kind: Kind, permissions: UInt16, uid: UInt32, gid: UInt32, mtime: UInt32, xattrs: [Xattr] = []) {
        self.kind = kind
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.xattrs = xattrs
    }

    var isDirectory: Bool { kind == .directory }
}

/// The directory tree: nodes name inodes; `nodes[0]` is the root directory.
public struct DirectoryTree: Sendable {
    public struct Node: Sendable {
        public var name: [UInt8]
        public var inode: Int
        /// For directories: the children, sorted by name (byte order).
        public var children: [Int]

        public init(name: [UInt8], inode: Int, children: [Int] = []) {
            self.name = name
            self.inode = inode
            self.children = children
        }
    }

    public var nodes: [Node]
    public var inodes: [InodeRecord]

    public init(nodes: [Node], inodes: [InodeRecord]) {
        self.nodes = nodes
        self.inodes = inodes
    }
}

/// Where a regular file's data went.
struct FileLayout: Sendable, Equatable {
    var size: UInt64 = 0
    var blocksStart: UInt64 = 0
    /// On-disk size of each full block (bit 24: stored uncompressed; 0: a hole).
    var blockSizes: [UInt32] = []
    var fragment: UInt32 = Format.invalidFragment
    var fragmentOffset: UInt32 = 0
    /// Bytes of holes (blocks of zeros not stored).
    var sparse: UInt64 = 0
}

struct FragmentEntry: Sendable, Equatable {
    var start: UInt64
    var size: UInt32
}
