import Glibc
import Runtime

/// What the library hooks need to know of a shared library file: its ELF `DT_SONAME` (the name
/// programs are linked against) and the version numbers in its file name.
public enum SharedLibrary {
    /// What the dynamic section of an ELF file says.
    public struct Dynamic: Equatable, Sendable {
        /// `DT_SONAME`
        public var soname: String?
        /// `DT_NEEDED`: the libraries it loads, by name.
        public var needed: [String] = []
        /// `DT_RUNPATH`, else `DT_RPATH`: where it looks first (`$ORIGIN` not expanded).
        public var runpath: [String] = []
    }

    /// The `DT_SONAME` of an ELF shared object, or nil when the file is not one or has none.
    public static func soname(of path: String) -> String? { dynamic(of: path)?.soname }

    /// Whether the file is a 64-bit ELF file (false: 32-bit), nil when it is not an ELF file.
    public static func is64Bit(_ path: String) -> Bool? {
        // O_NONBLOCK: a fifo named as a library must not block the open.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { System.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 5)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 5, 0) }
        guard got == 5, bytes[0..<4] == [0x7f, 0x45, 0x4c, 0x46], bytes[4] == 1 || bytes[4] == 2 else { return nil }
        return bytes[4] == 2
    }

    /// The dynamic section of an ELF file, or nil when it is not a dynamically linked ELF file.
    /// Read through the program headers (the dynamic segment and the string table it points
    /// to), as the dynamic loader does; little-endian 32- and 64-bit files.
    public static func dynamic(of path: String) -> Dynamic? {
        // O_NONBLOCK: a fifo named as a library must not block the open.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { System.close(fd) }
        func read(_ offset: UInt64, _ count: Int) -> [UInt8]? {
            guard count > 0, count <= 1 << 20, offset < UInt64(Int64.max) else { return nil }
            var bytes = [UInt8](repeating: 0, count: count)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return got == count ? bytes : nil
        }
        guard let header = read(0, 64), header[0..<4] == [0x7f, 0x45, 0x4c, 0x46], header[5] == 1 else { return nil }
        let wide = header[4] == 2
        func integer(_ bytes: [UInt8], _ at: Int, _ size: Int) -> UInt64 {
            guard at >= 0, at + size <= bytes.count else { return 0 }
            var value: UInt64 = 0
            for index in (0..<size).reversed() { value = value << 8 | UInt64(bytes[at + index]) }
            return value
        }
        let word = wide ? 8 : 4
        let programOffset = integer(header, wide ? 32 : 28, word)
        let entrySize = Int(integer(header, wide ? 54 : 42, 2))
        let entryCount = Int(integer(header, wide ? 56 : 44, 2))
        guard entrySize >= (wide ? 56 : 32), entryCount > 0, entryCount < 4096,
            let table = read(programOffset, entrySize * entryCount)
        else { return nil }
        // (virtual address, file offset, size in the file) of each loaded segment.
        var loads: [(UInt64, UInt64, UInt64)] = []
        var dynamic: (UInt64, UInt64)?
        for index in 0..<entryCount {
            let base = index * entrySize
            let type = integer(table, base, 4)
            let offset = integer(table, base + (wide ? 8 : 4), word)
            let address = integer(table, base + (wide ? 16 : 8), word)
            let size = integer(table, base + (wide ? 32 : 16), word)
            if type == 1 { loads.append((address, offset, size)) }
            if type == 2 { dynamic = (offset, size) }
        }
        guard let (dynamicOffset, dynamicSize) = dynamic, dynamicSize < 1 << 20,
            let entries = read(dynamicOffset, Int(dynamicSize))
        else { return nil }
        var stringTable: UInt64?
        var sonameOffset: UInt64?
        var neededOffsets: [UInt64] = []
        var runpathOffset: UInt64?
        var rpathOffset: UInt64?
        var at = 0
        while at + 2 * word <= entries.count {
            let tag = integer(entries, at, word)
            let value = integer(entries, at + word, word)
            if tag == 0 { break }
            switch tag {
            case 1: neededOffsets.append(value)
            case 5: stringTable = value
            case 14: sonameOffset = value
            case 15: rpathOffset = value
            case 29: runpathOffset = value
            default: break
            }
            at += 2 * word
        }
        guard let stringTable, let segment = loads.first(where: { stringTable >= $0.0 && stringTable - $0.0 < $0.2 }) else {
            return nil
        }
        let base = stringTable - segment.0 + segment.1
        func string(_ offset: UInt64) -> String? {
            let (sum, overflow) = base.addingReportingOverflow(offset)
            guard !overflow, let bytes = read(sum, 4096) ?? read(sum, 256) ?? read(sum, 32) else { return nil }
            let name = bytes.prefix { $0 != 0 }
            guard !name.isEmpty, name.count < bytes.count else { return nil }
            return String(decoding: name, as: UTF8.self)
        }
        var result = Dynamic()
        result.soname = sonameOffset.flatMap(string)
        result.needed = neededOffsets.compactMap(string)
        if let paths = (runpathOffset ?? rpathOffset).flatMap(string) {
            result.runpath = paths.split(separator: ":").map(String.init)
        }
        return result
    }

    /// The part of a library's name before `.so` (`libmpi` of `libmpi.so.12.1.8`), or nil.
    public static func stem(_ name: String) -> String? {
        guard let range = name.firstRange(of: ".so") else { return nil }
        let after = name[range.upperBound...]
        guard after.isEmpty || after.hasPrefix(".") else { return nil }
        return String(name[..<range.lowerBound])
    }

    /// The version numbers after `.so.` in a library's file name (`[12, 1, 8]` for
    /// `libmpi.so.12.1.8`); empty when there are none or one is not a number.
    public static func versions(_ name: String) -> [Int] {
        guard let range = name.firstRange(of: ".so.") else { return [] }
        let parts = name[range.upperBound...].split(separator: ".", omittingEmptySubsequences: false)
        let numbers = parts.compactMap { Int($0) }
        return numbers.count == parts.count ? numbers : []
    }
}

/// The ABI check of a host library against the image's library it replaces, on the version
/// numbers of their file names, as Sarus' MPI hook does (MPICH ABI initiative): `major`: the
/// major numbers present and equal (the sonames agree); `full`: `major`, and a host minor below
/// the image's is reported but accepted; `strict`: the major and minor numbers present and
/// equal.
public enum ABICompatibility: String, CaseIterable, Sendable {
    case major, full, strict

    public enum Verdict: Equatable, Sendable {
        case compatible
        /// Accepted, with a warning.
        case warning(String)
        case incompatible(String)
    }

    public func check(host: String, image: String) -> Verdict {
        let hostVersion = SharedLibrary.versions(host)
        let imageVersion = SharedLibrary.versions(image)
        guard let hostMajor = hostVersion.first, let imageMajor = imageVersion.first else {
            return .incompatible("\(hostVersion.isEmpty ? host : image) has no major version number in its name")
        }
        if hostMajor != imageMajor {
            return .incompatible("the major versions differ (\(hostMajor) on the host, \(imageMajor) in the image)")
        }
        switch self {
        case .major:
            return .compatible
        case .full:
            let hostMinor = hostVersion.count > 1 ? hostVersion[1] : 0
            let imageMinor = imageVersion.count > 1 ? imageVersion[1] : 0
            return hostMinor < imageMinor
                ? .warning("the host's \(host) is older than the image's \(image) (minor \(hostMinor) < \(imageMinor)); going on")
                : .compatible
        case .strict:
            // Neither with a minor number: equal (as Sarus compares the optional minors).
            if hostVersion.count == 1 && imageVersion.count == 1 { return .compatible }
            guard hostVersion.count > 1, imageVersion.count > 1 else {
                return .incompatible("\(hostVersion.count > 1 ? image : host) has no minor version number in its name")
            }
            return hostVersion[1] == imageVersion[1]
                ? .compatible : .incompatible("the minor versions differ (\(hostVersion[1]) on the host, \(imageVersion[1]) in the image)")
        }
    }
}

/// glibc's linker cache (`/etc/ld.so.cache`, what `ldconfig -p` prints): the new format
/// ("glibc-ld.so.cache1.1"), alone or after the old one ("ld.so-1.7.0").
public enum LinkerCache {
    public struct Entry: Equatable, Sendable {
        /// The library's soname, as programs ask for it.
        public var name: String
        public var path: String
        public var flags: UInt32
    }

    /// The flags of the machine's own (64-bit) libraries, to leave other ABIs aside.
    #if arch(x86_64)
    public static let nativeFlags: UInt32 = 0x0303
    /// The flags of the 32-bit libraries the machine also runs (i386 on x86_64: glibc's
    /// FLAG_ELF_LIBC6 without FLAG_X8664_LIB64), 0 where there are none.
    public static let compat32Flags: UInt32 = 0x0003
    #elseif arch(arm64)
    public static let nativeFlags: UInt32 = 0x0a03
    public static let compat32Flags: UInt32 = 0
    #else
    public static let nativeFlags: UInt32 = 0
    public static let compat32Flags: UInt32 = 0
    #endif

    public static func parse(_ bytes: [UInt8]) -> [Entry]? {
        func integer(_ at: Int, _ size: Int) -> UInt64? {
            guard at >= 0, at + size <= bytes.count else { return nil }
            var value: UInt64 = 0
            for index in (0..<size).reversed() { value = value << 8 | UInt64(bytes[at + index]) }
            return value
        }
        func string(_ at: UInt64) -> String? {
            guard at < UInt64(bytes.count) else { return nil }
            let tail = bytes[Int(at)...]
            guard let end = tail.firstIndex(of: 0) else { return nil }
            return String(decoding: tail[..<end], as: UTF8.self)
        }
        let newMagic = Array("glibc-ld.so.cache1.1".utf8)
        let oldMagic = Array("ld.so-1.7.0".utf8)
        var start = 0
        if bytes.starts(with: oldMagic) {
            guard let count = integer(12, 4), count < 1 << 24 else { return nil }
            start = (16 + Int(count) * 12 + 7) & ~7
        }
        guard bytes.count >= start + 48, Array(bytes[start..<(start + newMagic.count)]) == newMagic,
            let count = integer(start + 20, 4), count < 1 << 24
        else { return nil }
        var entries: [Entry] = []
        for index in 0..<Int(count) {
            let base = start + 48 + index * 24
            // String offsets count from the start of the file.
            guard let flags = integer(base, 4), let key = integer(base + 4, 4), let value = integer(base + 8, 4),
                let name = string(key), let path = string(value)
            else { return nil }
            entries.append(Entry(name: name, path: path, flags: UInt32(truncatingIfNeeded: flags)))
        }
        return entries
    }

    /// The native entries of the linker cache file at `path` (the host's /etc/ld.so.cache), or
    /// with `compat32` its 32-bit ones; nil when it cannot be read or is not a glibc linker cache.
    public static func nativeEntries(of path: String, compat32: Bool = false) -> [Entry]? {
        guard let bytes = System.readSmallFile(path, limit: 64 << 20), let entries = parse(bytes) else { return nil }
        return compat32 ? Self.compat32(entries) : native(entries)
    }

    /// The entries of the machine's own ABI (all when it is not known).
    public static func native(_ entries: [Entry]) -> [Entry] {
        nativeFlags == 0 ? entries : entries.filter { $0.flags & 0xff03 == nativeFlags & 0xff03 }
    }

    /// The entries of the machine's 32-bit ABI (none where it has none).
    public static func compat32(_ entries: [Entry]) -> [Entry] {
        compat32Flags == 0 ? [] : entries.filter { $0.flags & 0xff03 == compat32Flags & 0xff03 }
    }
}
