import Foundation
import ToolboxCore

/// One member of a tar archive, with PAX and GNU extensions applied.
public struct TarEntry: Sendable {
    public enum Kind: Sendable, Equatable {
        case regular, hardLink, symbolicLink, characterDevice, blockDevice, directory, fifo
    }

    /// The member's path as stored (bytes: names need not be UTF-8).
    public var path: [UInt8]
    public var kind: Kind
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Int64
    /// Bytes of data stored in the archive for this member.
    public var storedSize: Int64
    /// The file's size once holes are filled in (differs from storedSize for sparse files).
    public var size: Int64
    /// Where the stored data goes in a sparse file: (offset, length) runs, in order.
    public var sparseMap: [(offset: Int64, length: Int64)]?
    /// Link target of hard and symbolic links.
    public var linkTarget: [UInt8]
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    /// Extended attributes from PAX `SCHILY.xattr.` records.
    public var xattrs: [(name: [UInt8], value: [UInt8])]
    /// The member's number in the archive, from 1 (for messages).
    public var index: Int

    /// The path for messages: control characters (a NUL, a newline) written as \xNN.
    public var displayPath: String {
        guard path.contains(where: { $0 < 0x20 || $0 == 0x7F }) else { return String(decoding: path, as: UTF8.self) }
        var text = ""
        var run: [UInt8] = []
        for byte in path {
            if byte < 0x20 || byte == 0x7F {
                text += String(decoding: run, as: UTF8.self)
                run.removeAll()
                let hex = String(byte, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" : "") + hex
            } else {
                run.append(byte)
            }
        }
        return text + String(decoding: run, as: UTF8.self)
    }
}

/// Reads a tar stream member by member: ustar, GNU (long names, old sparse) and PAX (long
/// names, sizes, xattrs, GNU sparse 0.1 and 1.0). Data is handed out in chunks, never buffered
/// whole.
public final class TarReader {
    private let stream: LayerStream
    /// The read buffer (owned; freed in deinit).
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var finished = false
    /// Data of the current member not yet consumed, and padding after it.
    private var remaining: Int64 = 0
    private var padding: Int = 0
    private var count = 0
    private var globalRecords: [String: [UInt8]] = [:]
    /// Bytes of the tar stream consumed so far.
    public private(set) var offset: Int64 = 0

    public init(stream: LayerStream) {
        self.stream = stream
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    }

    deinit { buffer.deallocate() }

    private var path: String { stream.path }

    private func corrupt(_ message: String) -> Diagnostic {
        Diagnostic(
            kind: .invalid, file: path, message: "\(message) (at byte \(offset) of the tar stream)",
            hint: "the layer is not a valid tar archive; pull it again or rebuild it")
    }

    /// Makes `count` bytes available at `start`; false at the end of the stream.
    private func fill(_ count: Int) throws(Diagnostic) -> Bool {
        if end - start >= count { return true }
        if start > 0 {
            let pending = end - start
            if pending > 0, let base = buffer.baseAddress { memmove(base, base + start, pending) }
            start = 0
            end = pending
        }
        while end - start < count {
            let read = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
            if read == 0 { return false }
            end += read
        }
        return true
    }

    private func skip(_ count: Int64) throws(Diagnostic) {
        var left = count
        while left > 0 {
            if start == end {
                guard try fill(1) else { throw truncated() }
            }
            let step = Int(min(left, Int64(end - start)))
            start += step
            offset += Int64(step)
            left -= Int64(step)
        }
    }

    private func truncated() -> Diagnostic {
        Diagnostic(
            kind: .invalid, file: path, message: "the tar stream ends in the middle of a member (at byte \(offset))",
            hint: "the layer is truncated; pull it again")
    }

    /// Reads what follows the end of the archive (the zero blocks' padding, a compressed
    /// stream's end), so that a gzip or zstd stream cut short after the archive's last member is
    /// found out: its checksum and length are at its very end.
    public func readToEnd() throws(Diagnostic) {
        while try stream.read(into: buffer) > 0 {}
        start = 0
        end = 0
    }

    /// Reads `count` bytes of member data (for PAX records, long names, sparse maps).
    private func readBytes(_ count: Int64, limit: Int64 = 16 << 20) throws(Diagnostic) -> [UInt8] {
        guard count <= limit else { throw corrupt("an extended header of \(count) bytes is larger than \(limit) bytes") }
        var result: [UInt8] = []
        result.reserveCapacity(Int(count))
        var left = Int(count)
        while left > 0 {
            if start == end {
                guard try fill(1) else { throw truncated() }
            }
            let step = min(left, end - start)
            result.append(contentsOf: buffer[start..<(start + step)])
            start += step
            offset += Int64(step)
            left -= step
        }
        return result
    }

    private static func padding(for size: Int64) -> Int { Int((512 - size % 512) % 512) }

    /// The largest member size or sparse file size taken: sizes, offsets and their padding add up
    /// without overflowing (and far beyond what any layer holds: 2^62 bytes).
    static let largestSize: Int64 = 1 << 62

    /// The next member, or nil at the end of the archive.
    public func next() throws(Diagnostic) -> TarEntry? {
        if finished { return nil }
        try skip(remaining + Int64(padding))
        remaining = 0
        padding = 0

        var records: [String: [UInt8]] = globalRecords
        var longName: [UInt8]?
        var longLink: [UInt8]?
        while true {
            guard try fill(512) else {
                if end - start == 0 && offset == 0 {
                    throw Diagnostic(
                        kind: .invalid, file: path, message: "the layer holds no tar data (an empty stream)",
                        hint: "a layer without files is still a tar archive (1024 zero bytes); rebuild or pull it again")
                }
                if end - start == 0 && count > 0 {
                    // No end-of-archive blocks: accepted, as GNU tar does.
                    finished = true
                    return nil
                }
                throw truncated()
            }
            let header = Array(buffer[start..<(start + 512)])
            if header.allSatisfy({ $0 == 0 }) {
                finished = true
                return nil
            }
            try verifyChecksum(header)
            start += 512
            offset += 512
            let type = header[156]
            let size = try number(header[124..<136], field: "size")
            guard size >= 0 else { throw corrupt("negative size") }
            // With its padding, every size must still be a number (a PAX size below is held alike).
            guard size <= Self.largestSize else { throw corrupt("a member of \(size) bytes (the size field is out of range)") }
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                let data = try readBytes(size)
                try skip(Int64(Self.padding(for: size)))
                let parsed = try parsePAX(data)
                if type == UInt8(ascii: "g") {
                    globalRecords.merge(parsed) { $1 }
                }
                records.merge(parsed) { $1 }
                continue
            case UInt8(ascii: "L"):
                longName = Self.cString(try readBytes(size))
                try skip(Int64(Self.padding(for: size)))
                continue
            case UInt8(ascii: "K"):
                longLink = Self.cString(try readBytes(size))
                try skip(Int64(Self.padding(for: size)))
                continue
            case UInt8(ascii: "V"):
                // A volume label: not a file.
                try skip(size + Int64(Self.padding(for: size)))
                continue
            default:
                break
            }
            count += 1
            // A PAX record with an empty value removes the keyword (POSIX pax, "keyword= ").
            records = records.filter { !$0.value.isEmpty }
            return try entry(header: header, records: records, longName: longName, longLink: longLink)
        }
    }

    private func verifyChecksum(_ header: [UInt8]) throws(Diagnostic) {
        guard let stored = try? number(header[148..<156], field: "checksum") else {
            throw corrupt("not a tar header (unreadable checksum)")
        }
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in header.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else {
            throw corrupt("not a tar header (checksum mismatch)")
        }
    }

    private func entry(header: [UInt8], records: [String: [UInt8]], longName: [UInt8]?, longLink: [UInt8]?) throws(Diagnostic) -> TarEntry {
        let magic = Array(header[257..<263])
        let isUstar = magic == Array("ustar\0".utf8)
        let isGNU = magic == Array("ustar ".utf8)
        var name = Self.cString(Array(header[0..<100]))
        if isUstar {
            let prefix = Self.cString(Array(header[345..<500]))
            if !prefix.isEmpty { name = prefix + [UInt8(ascii: "/")] + name }
        }
        if let longName { name = longName }
        if let value = records["path"] { name = value }
        var link = Self.cString(Array(header[157..<257]))
        if let longLink { link = longLink }
        if let value = records["linkpath"] { link = value }

        let type = header[156]
        var storedSize = try number(header[124..<136], field: "size")
        if let value = records["size"] { storedSize = try decimal(value, key: "size") }
        guard storedSize <= Self.largestSize else {
            throw corrupt("a member of \(storedSize) bytes (the size is out of range)")
        }
        var kind: TarEntry.Kind
        switch type {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"), UInt8(ascii: "S"): kind = .regular
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symbolicLink
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"), UInt8(ascii: "D"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        default:
            // POSIX: an unknown type is read as a regular file.
            kind = .regular
        }
        // Old GNU tar: a directory is also a regular entry whose name ends in "/".
        if kind == .regular && (type == 0 || type == UInt8(ascii: "0")) && name.last == UInt8(ascii: "/") { kind = .directory }
        var entry = TarEntry(
            path: name, kind: kind, mode: UInt32(truncatingIfNeeded: try number(header[100..<108], field: "mode")),
            uid: try word(try number(header[108..<116], field: "uid"), "uid"),
            gid: try word(try number(header[116..<124], field: "gid"), "gid"),
            mtime: try number(header[136..<148], field: "mtime", signed: true), storedSize: storedSize, size: storedSize, sparseMap: nil,
            linkTarget: link, deviceMajor: 0, deviceMinor: 0, xattrs: [], index: count)
        if isUstar || isGNU {
            entry.deviceMajor = try word((try? number(header[329..<337], field: "devmajor")) ?? 0, "device major")
            entry.deviceMinor = try word((try? number(header[337..<345], field: "devminor")) ?? 0, "device minor")
        }
        if let value = records["uid"] { entry.uid = try word(try decimal(value, key: "uid"), "uid") }
        if let value = records["gid"] { entry.gid = try word(try decimal(value, key: "gid"), "gid") }
        if let value = records["mtime"] {
            let whole = value.split(separator: UInt8(ascii: ".")).first.map(Array.init) ?? value
            // A time before 1970 is kept as negative (squashfs stores it as 0).
            if whole.first == UInt8(ascii: "-") {
                entry.mtime = -(try decimal(Array(whole.dropFirst()), key: "mtime"))
            } else {
                entry.mtime = try decimal(whole, key: "mtime")
            }
        }
        if let value = records["SCHILY.devmajor"] { entry.deviceMajor = try word(try decimal(value, key: "SCHILY.devmajor"), "device major") }
        if let value = records["SCHILY.devminor"] { entry.deviceMinor = try word(try decimal(value, key: "SCHILY.devminor"), "device minor") }
        for key in records.keys.sorted() where key.hasPrefix("SCHILY.xattr.") {
            entry.xattrs.append((Array(key.dropFirst("SCHILY.xattr.".count).utf8), records[key] ?? []))
        }

        // Data of hard links, directories, devices and fifos is not file content: skipped.
        remaining = storedSize
        padding = Self.padding(for: storedSize)

        // Sparse files.
        if type == UInt8(ascii: "S") && isGNU {
            entry.sparseMap = try oldGNUSparseMap(header)
            entry.size = try number(header[483..<495], field: "realsize")
        } else if let major = records["GNU.sparse.major"], let minor = records["GNU.sparse.minor"],
            major == Array("1".utf8), minor == Array("0".utf8)
        {
            if let value = records["GNU.sparse.name"] { entry.path = value }
            if let value = records["GNU.sparse.realsize"] { entry.size = try decimal(value, key: "GNU.sparse.realsize") }
            entry.sparseMap = try sparseMapFromData()
        } else if let map = records["GNU.sparse.map"] {
            if let value = records["GNU.sparse.name"] { entry.path = value }
            if let value = records["GNU.sparse.realsize"] ?? records["GNU.sparse.size"] {
                entry.size = try decimal(value, key: "GNU.sparse.realsize")
            }
            let numbers = try map.split(separator: UInt8(ascii: ",")).map { (field) throws(Diagnostic) -> Int64 in
                try decimal(Array(field), key: "GNU.sparse.map")
            }
            guard numbers.count % 2 == 0 else { throw corrupt("GNU.sparse.map has an odd number of fields") }
            entry.sparseMap = stride(from: 0, to: numbers.count, by: 2).map { (numbers[$0], numbers[$0 + 1]) }
        }
        if let map = entry.sparseMap {
            guard entry.size <= Self.largestSize else {
                throw corrupt("member \(entry.displayPath): a sparse file of \(entry.size) bytes (the size is out of range)")
            }
            var position: Int64 = 0
            var stored: Int64 = 0
            for run in map {
                // Both at most the file's size (2^62): their sum does not overflow.
                guard run.offset >= position, run.length >= 0, run.offset <= entry.size, run.length <= entry.size,
                    run.offset + run.length <= entry.size
                else {
                    throw corrupt("member \(entry.displayPath): the sparse map is out of order or beyond the file size")
                }
                position = run.offset + run.length
                stored += run.length
            }
            guard stored == remaining else {
                throw corrupt("member \(entry.displayPath): the sparse map describes \(stored) bytes but \(remaining) are stored")
            }
        }
        return entry
    }

    private func oldGNUSparseMap(_ header: [UInt8]) throws(Diagnostic) -> [(offset: Int64, length: Int64)] {
        var map: [(offset: Int64, length: Int64)] = []
        func runs(_ bytes: ArraySlice<UInt8>, count: Int) throws(Diagnostic) {
            for index in 0..<count {
                let base = bytes.startIndex + index * 24
                let offsetField = bytes[base..<(base + 12)]
                if offsetField.allSatisfy({ $0 == 0 }) { continue }
                map.append((try number(offsetField, field: "sparse offset"), try number(bytes[(base + 12)..<(base + 24)], field: "sparse length")))
            }
        }
        try runs(header[386..<482], count: 4)
        var extended = header[482] != 0
        while extended {
            guard try fill(512) else { throw truncated() }
            let block = Array(buffer[start..<(start + 512)])
            start += 512
            offset += 512
            try runs(block[0..<504], count: 21)
            extended = block[504] != 0
        }
        return map
    }

    /// GNU sparse 1.0: the map is at the start of the data, as decimal lines, padded to 512.
    private func sparseMapFromData() throws(Diagnostic) -> [(offset: Int64, length: Int64)] {
        var consumed: Int64 = 0
        func line() throws(Diagnostic) -> Int64 {
            var digits: [UInt8] = []
            while true {
                guard consumed < remaining else { throw corrupt("the sparse map runs past the member's data") }
                let byte = try readBytes(1)[0]
                consumed += 1
                if byte == UInt8(ascii: "\n") { break }
                digits.append(byte)
                guard digits.count <= 20 else { throw corrupt("a sparse map number is too long") }
            }
            return try decimal(digits, key: "sparse map")
        }
        let runs = try line()
        guard runs >= 0 && runs < 1 << 20 else { throw corrupt("a sparse map of \(runs) runs") }
        var map: [(offset: Int64, length: Int64)] = []
        for _ in 0..<runs { map.append((try line(), try line())) }
        let pad = Int64(Self.padding(for: consumed))
        guard consumed + pad <= remaining else { throw corrupt("the sparse map runs past the member's data") }
        try skip(pad)
        remaining -= consumed + pad
        return map
    }

    /// Hands the member's stored data to `body` in chunks (views into the read buffer).
    public func readData(_ body: (UnsafeRawBufferPointer) throws(Diagnostic) -> Void) throws(Diagnostic) {
        while remaining > 0 {
            if start == end {
                guard try fill(1) else { throw truncated() }
            }
            let step = Int(min(remaining, Int64(end - start)))
            try body(UnsafeRawBufferPointer(rebasing: buffer[start..<(start + step)]))
            start += step
            offset += Int64(step)
            remaining -= Int64(step)
        }
    }

    // MARK: Fields

    private static func cString(_ bytes: [UInt8]) -> [UInt8] {
        if let end = bytes.firstIndex(of: 0) { return Array(bytes[..<end]) }
        return bytes
    }

    /// An octal field, or a base-256 one (first byte's high bit set) for large values.
    /// `signed`: a negative base-256 value is allowed (a time before 1970); it reads as -1.
    private func number(_ field: ArraySlice<UInt8>, field name: String, signed: Bool = false) throws(Diagnostic) -> Int64 {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                guard signed else { throw corrupt("negative base-256 \(name) field") }
                return -1
            }
            var value: Int64 = Int64(first & 0x3F)
            for byte in field.dropFirst() {
                guard value < Int64.max >> 8 else { throw corrupt("the \(name) field overflows") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            if byte == 0 || (byte == UInt8(ascii: " ") && seenDigit) { break }
            if byte == UInt8(ascii: " ") { continue }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "7") else {
                throw corrupt("the \(name) field is not an octal number")
            }
            guard value < Int64.max >> 3 else { throw corrupt("the \(name) field overflows") }
            value = value << 3 | Int64(byte - UInt8(ascii: "0"))
            seenDigit = true
        }
        return value
    }

    /// An owner or device number, which Linux keeps in 32 bits: a larger one is refused, not cut
    /// (cut, uid 2^40 would become 0, root).
    private func word(_ value: Int64, _ name: String) throws(Diagnostic) -> UInt32 {
        guard value >= 0, value <= Int64(UInt32.max) else { throw corrupt("the \(name) \(value) does not fit in 32 bits") }
        return UInt32(value)
    }

    private func decimal(_ bytes: [UInt8], key: String) throws(Diagnostic) -> Int64 {
        guard let text = String(bytes: bytes, encoding: .utf8), let value = Int64(text), value >= 0 else {
            throw corrupt("PAX record \(key) is not a number")
        }
        return value
    }

    /// PAX records: "<length> <key>=<value>\n".
    private func parsePAX(_ data: [UInt8]) throws(Diagnostic) -> [String: [UInt8]] {
        var records: [String: [UInt8]] = [:]
        var sparsePairs: [UInt8] = []
        var index = 0
        while index < data.count {
            if data[index] == 0 { break }
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: data[index..<space], as: UTF8.self)), length > 0,
                index + length <= data.count, data[index + length - 1] == UInt8(ascii: "\n"),
                let equals = data[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "="))
            else {
                throw corrupt("malformed PAX extended header")
            }
            let key = String(decoding: data[(space + 1)..<equals], as: UTF8.self)
            let value = Array(data[(equals + 1)..<(index + length - 1)])
            records[key] = value
            // GNU sparse format 0.0: the map as repeated offset and numbytes records, in order;
            // gathered into the map of format 0.1.
            if key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes" {
                sparsePairs += (sparsePairs.isEmpty ? [] : [UInt8(ascii: ",")]) + value
            }
            index += length
        }
        if !sparsePairs.isEmpty && records["GNU.sparse.map"] == nil { records["GNU.sparse.map"] = sparsePairs }
        return records
    }
}
