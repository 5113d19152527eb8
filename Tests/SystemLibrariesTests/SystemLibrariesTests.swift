import Foundation
import SystemLibraries
import Testing

/// The C libraries link and work through the project's shims: real data through each one.
struct SystemLibrariesTests {
    @Test func zstdRoundTrip() throws {
        let input = Array(String(repeating: "containers first ", count: 1000).utf8)
        let compressed = try Zstd.compress(input, level: 3)
        #expect(compressed.count < input.count / 10)
        #expect(try Zstd.decompress(compressed) == input)
        #expect(throws: Zstd.Failure.self) { try Zstd.decompress(Array("not zstd".utf8)) }
    }

    @Test func gzipFromTheGzipTool() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = String(repeating: "layer data\n", count: 5000)
        try text.write(to: dir.appendingPathComponent("f"), atomically: true, encoding: .utf8)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-9", dir.appendingPathComponent("f").path]
        try gzip.run()
        gzip.waitUntilExit()
        let compressed = try [UInt8](Data(contentsOf: dir.appendingPathComponent("f.gz")))
        #expect(try Gzip.decompress(compressed) == Array(text.utf8))
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(Array(compressed.prefix(compressed.count / 2))) }
    }

    @Test func curlFetchesAFileURL() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString)")
        try "hello from curl".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(Curl.version.hasPrefix("libcurl/"))
        let (_, body) = try Curl.fetch("file://" + file.path)
        #expect(String(decoding: body, as: UTF8.self) == "hello from curl")
        #expect(throws: Curl.Failure.self) { try Curl.fetch("file:///nonexistent/\(UUID().uuidString)") }
    }

    /// libsquashfuse reads an image made by mksquashfs (squashfs-tools).
    @Test func squashfuseReadsAnImage() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mksquashfs") else {
            print("skipped: mksquashfs is not installed (apt-get install squashfs-tools)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sqfs-\(UUID().uuidString)")
        let tree = dir.appendingPathComponent("tree")
        try FileManager.default.createDirectory(at: tree.appendingPathComponent("etc"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let big = String(repeating: "0123456789abcdef", count: 20000)
        try "NAME=demo\n".write(to: tree.appendingPathComponent("etc/os-release"), atomically: true, encoding: .utf8)
        try big.write(to: tree.appendingPathComponent("big"), atomically: true, encoding: .utf8)
        let image = dir.appendingPathComponent("img.sqsh").path
        let mk = Process()
        mk.executableURL = URL(fileURLWithPath: "/usr/bin/mksquashfs")
        mk.arguments = [tree.path, image, "-comp", "zstd", "-quiet", "-no-progress"]
        mk.standardOutput = FileHandle.nullDevice
        try mk.run()
        mk.waitUntilExit()
        #expect(mk.terminationStatus == 0)

        let fs = try SquashFSImage(path: image)
        #expect(fs.inodeCount == 4)
        #expect(fs.blockSize == 131072)
        #expect(fs.compressionID == 6)
        #expect(try fs.entry(at: "/missing") == nil)
        #expect(try fs.contents(of: "/etc/os-release") == Array("NAME=demo\n".utf8))
        #expect(try fs.contents(of: "/big") == Array(big.utf8))
        #expect(throws: SquashFSImage.Failure.self) { try SquashFSImage(path: tree.appendingPathComponent("etc/os-release").path) }
    }
}
