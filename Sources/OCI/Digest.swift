import Crypto
import ToolboxCore

/// A content digest, `sha256:<64 lowercase hex digits>` (OCI image-spec descriptor.md, "Digests").
/// Only SHA-256 is accepted: it is what registries serve, and the cache is keyed by it.
public struct Digest: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    /// The 64 lowercase hexadecimal digits.
    public let hex: String

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    public init(parsing text: String) throws(ParseError) {
        guard text.hasPrefix("sha256:") else {
            throw ParseError(description: "unsupported digest \"\(text)\": only sha256:<64 hex digits> is supported")
        }
        let hex = String(text.dropFirst("sha256:".count))
        guard hex.utf8.count == 64, hex.utf8.allSatisfy(Self.isLowerHex) else {
            throw ParseError(description: "invalid digest \"\(text)\": expected sha256: and 64 lowercase hex digits")
        }
        self.hex = hex
    }

    /// The digest of some bytes.
    public init(of bytes: [UInt8]) {
        var hasher = SHA256()
        bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        self.init(hashing: hasher.finalize())
    }

    init(hashing digest: SHA256.Digest) {
        let table = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in digest {
            hex.append(table[Int(byte >> 4)])
            hex.append(table[Int(byte & 0x0f)])
        }
        self.hex = String(decoding: hex, as: UTF8.self)
    }

    public var description: String { "sha256:" + hex }

    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }

    static func isLowerHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// SHA-256 over a stream of chunks (a blob as it downloads or as it is read back).
public struct StreamingDigest {
    var hasher = SHA256()
    public private(set) var count: Int64 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: bytes)
        count += Int64(bytes.count)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public func finalize() -> Digest {
        Digest(hashing: hasher.finalize())
    }

    /// The digest of an open file from its current position to its end.
    public static func of(_ fd: Int32, path: String) throws(Diagnostic) -> Digest {
        var hasher = StreamingDigest()
        try FileReader.stream(fd, path: path) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in hasher.update(chunk) }
        return hasher.finalize()
    }
}
