import Foundation
import Testing

/// Runs the built executables of this package, as a user would: arguments, environment, working
/// directory and stdin in; stdout, stderr and the exit status out, checked together.
struct ToolResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String

    var description: String { "status \(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

enum Tools {
    /// The directory holding the built executables: the test bundle's own directory.
    static let directory: URL = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The runner may sit inside a bundle directory (name.xctest/...).
        while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("edf-merge").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }()

    static func path(_ tool: String) -> String {
        directory.appendingPathComponent(tool).path
    }

    /// A minimal, predictable environment: HOME and EDF_PATH point into the sandbox unless given.
    static func run(
        _ tool: String, _ arguments: [String] = [], environment: [String: String] = [:], in directory: URL,
        stdin: String? = nil
    ) throws -> ToolResult {
        try run(absolute: path(tool), arguments, environment: environment, in: directory, stdin: stdin)
    }

    static func run(
        absolute executable: String, _ arguments: [String] = [], environment: [String: String] = [:], in directory: URL,
        stdin: String? = nil
    ) throws -> ToolResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ["PATH": "/usr/bin:/bin", "HOME": directory.path, "EDF_SYSTEM_PATH": directory.appendingPathComponent("system").path]
        env.merge(environment) { _, new in new }
        process.environment = env
        process.currentDirectoryURL = directory
        let out = directory.appendingPathComponent(".stdout-\(UUID().uuidString)")
        let err = directory.appendingPathComponent(".stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        let outHandle = try FileHandle(forWritingTo: out)
        let errHandle = try FileHandle(forWritingTo: err)
        process.standardOutput = outHandle
        process.standardError = errHandle
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        return ToolResult(
            status: process.terminationStatus,
            stdout: try String(contentsOf: out, encoding: .utf8),
            stderr: try String(contentsOf: err, encoding: .utf8))
    }
}

/// A scratch directory with helpers to write EDFs into it; removed when dropped.
final class Sandbox {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("toolbox-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    var path: String { url.path }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: file)
        return file.path
    }

    func mkdir(_ name: String) throws {
        try FileManager.default.createDirectory(at: url.appendingPathComponent(name), withIntermediateDirectories: true)
    }

    func run(_ tool: String, _ arguments: [String] = [], environment: [String: String] = [:], stdin: String? = nil) throws -> ToolResult {
        try Tools.run(tool, arguments, environment: environment, in: url, stdin: stdin)
    }

    /// Parses stdout as a JSON object.
    func json(_ result: ToolResult) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(object as? [String: Any], "stdout is not a JSON object: \(result.stdout)")
    }
}
