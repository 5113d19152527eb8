import Foundation
import Layers
import SystemLibraries
import Testing
import ToolboxCore

/// A compressed layer read with and without its decoding thread gives the same bytes, or the same
/// error; a reader that stops early stops the thread.
struct LayerStreamTests {
    /// 12 MiB that compress but not to nothing: more than the decoding thread's chunks hold, so
    /// that it waits for the reader and reuses its chunks.
    static let content: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let words = Array("layer tar data usr bin lib share doc locale man etc ".utf8)
        var bytes = [UInt8]()
        bytes.reserveCapacity(12 << 20)
        while bytes.count < 12 << 20 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let pick = Int(state >> 33)
            if pick % 4 == 0 {
                bytes.append(UInt8(truncatingIfNeeded: pick >> 8))
            } else {
                let start = pick % (words.count - 8)
                bytes.append(contentsOf: words[start..<(start + 8)])
            }
        }
        return bytes
    }()

    final class Scratch {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("layerstream-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }

        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            let file = path + "/" + name
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            return file
        }
    }

    /// Two zstd frames (as `zstd` writes a file it was given in two parts).
    static func zstdLayer() throws -> [UInt8] {
        let half = content.count / 2
        return try Zstd.compress(Array(content[..<half])) + Zstd.compress(Array(content[half...]))
    }

    /// Two gzip members, made by the gzip tool.
    static func gzipLayer(in scratch: Scratch) throws -> [UInt8] {
        let half = content.count / 2
        var members: [UInt8] = []
        for (index, part) in [Array(content[..<half]), Array(content[half...])].enumerated() {
            let file = try scratch.write("part\(index)", part)
            let gzip = Process()
            gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
            gzip.arguments = ["-6", file]
            try gzip.run()
            gzip.waitUntilExit()
            #expect(gzip.terminationStatus == 0)
            members += try [UInt8](Data(contentsOf: URL(fileURLWithPath: file + ".gz")))
        }
        return members
    }

    /// Everything the stream gives, read in pieces of an odd size, and the error it ended with.
    static func readAll(_ path: String, readAhead: Bool) throws -> (bytes: [UInt8], error: Diagnostic?) {
        let stream = try LayerStream(path: path, readAhead: readAhead)
        var bytes: [UInt8] = []
        var piece = [UInt8](repeating: 0, count: 7001)
        do {
            while true {
                let count = try piece.withUnsafeMutableBytes { raw in
                    Result { () throws(Diagnostic) in try stream.read(into: raw) }
                }.get()
                if count == 0 { return (bytes, nil) }
                bytes += piece[..<count]
            }
        } catch {
            return (bytes, error)
        }
    }

    @Test(arguments: ["zstd", "gzip"])
    func sameBytesWithAndWithoutTheDecodingThread(_ kind: String) throws {
        let scratch = try Scratch()
        let layer = try scratch.write("layer", kind == "zstd" ? try Self.zstdLayer() : try Self.gzipLayer(in: scratch))
        let direct = try Self.readAll(layer, readAhead: false)
        let ahead = try Self.readAll(layer, readAhead: true)
        #expect(direct.error == nil)
        #expect(ahead.error == nil)
        // (Compared outside #expect, which would print megabytes on a failure.)
        let directRight = direct.bytes == Self.content, aheadRight = ahead.bytes == Self.content
        #expect(directRight)
        #expect(aheadRight)
        #expect(try LayerStream(path: layer).compression.rawValue == kind)
    }

    /// gzip checks a CRC at each member's end; a zstd frame made without a checksum shows damage
    /// only where it breaks the format, so zstd is cut short instead.
    @Test(arguments: [("gzip", "corrupt"), ("gzip", "truncated"), ("zstd", "truncated")])
    func sameErrorAtTheSamePlace(_ kind: String, _ fault: String) throws {
        let scratch = try Scratch()
        var bytes = kind == "zstd" ? try Self.zstdLayer() : try Self.gzipLayer(in: scratch)
        if fault == "corrupt" {
            for index in (bytes.count / 4)..<(bytes.count / 4 + 64) { bytes[index] ^= 0x5A }
        } else {
            bytes.removeLast(bytes.count / 3)
        }
        let layer = try scratch.write("layer", bytes)
        let direct = try Self.readAll(layer, readAhead: false)
        let ahead = try Self.readAll(layer, readAhead: true)
        let error = try #require(direct.error)
        #expect(ahead.error == error)
        // What the failing decode call produced is dropped, and the calls differ in size with and
        // without the thread: the bytes before the error are the layer's own either way.
        for read in [direct, ahead] {
            #expect(read.bytes.count < Self.content.count)
            if fault == "truncated" {
                let right = read.bytes == Array(Self.content[..<read.bytes.count])
                #expect(right)
            }
        }
        #expect(error.message.contains(fault == "corrupt" ? "corrupt gzip data" : "the \(kind) stream is truncated"))
    }

    /// Readers that stop after a few bytes (a tar's end found early, a hard link resolved) leave no
    /// thread and no open file behind.
    @Test func aReaderThatStopsEarlyStopsTheThread() throws {
        let scratch = try Scratch()
        let layer = try scratch.write("layer", try Self.zstdLayer())
        // This layer's open descriptors (tests run in parallel in this process: only its own count).
        func openFiles() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").filter { fd in
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd)) == layer
            }.count
        }
        let before = try openFiles()
        #expect(before == 0)
        for round in 0..<40 {
            let stream = try LayerStream(path: layer, readAhead: true)
            var piece = [UInt8](repeating: 0, count: 100 * round + 1)
            let count = try piece.withUnsafeMutableBytes { raw in
                Result { () throws(Diagnostic) in try stream.read(into: raw) }
            }.get()
            let right = piece[..<count] == Self.content[..<count]
            #expect(right)
        }
        #expect(try openFiles() == before)
    }
}
