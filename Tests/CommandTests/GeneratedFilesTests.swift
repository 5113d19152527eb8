import Foundation
import Testing

/// Completions and man pages are generated from the argument parser and committed; these tests
/// fail while the committed files differ from what the built commands generate
/// (run contrib/dev/update-generated.sh).
struct GeneratedFilesTests {
    static let tools = ["edf-merge", "edf-expand", "img-pull", "img-squash", "img-build", "ns-enter", "hook-run", "toolbox-hook", "toolbox-srun", "toolbox-sbatch", "toolbox-salloc"]
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let completionFiles: [(String, String, String)] = tools.flatMap { tool in
        [(tool, "bash", "completions/bash/\(tool)"), (tool, "zsh", "completions/zsh/_\(tool)"),
         (tool, "fish", "completions/fish/\(tool).fish")]
    }

    @Test(arguments: completionFiles)
    func completionsAreCurrent(_ c: (String, String, String)) throws {
        let box = try Sandbox()
        let result = try box.run(c.0, ["--generate-completion-script", c.1])
        #expect(result.status == 0)
        let committed = try String(contentsOf: Self.root.appendingPathComponent(c.2), encoding: .utf8)
        #expect(result.stdout == committed, "\(c.2) is out of date: run contrib/dev/update-generated.sh")
    }

    /// The man pages are made from this help dump; an unchanged dump means current man pages.
    @Test(arguments: tools)
    func manPagesAreCurrent(_ tool: String) throws {
        let box = try Sandbox()
        let result = try box.run(tool, ["--experimental-dump-help"])
        #expect(result.status == 0)
        let committed = try String(contentsOf: Self.root.appendingPathComponent("contrib/man/help/\(tool).json"), encoding: .utf8)
        #expect(result.stdout == committed, "contrib/man/\(tool).1 is out of date: run contrib/dev/update-generated.sh")
        #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent("contrib/man/\(tool).1").path))
    }

    /// One version for every command, on stdout, status 0 (ns-enter's fast parser leaves it to
    /// swift-argument-parser, before its own checks of what to run in).
    @Test(arguments: tools)
    func everyCommandPrintsTheVersion(_ tool: String) throws {
        let box = try Sandbox()
        let result = try box.run(tool, ["--version"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout == "0.9.0\n", "\(result)")
        #expect(result.stderr.isEmpty, "\(result)")
    }
}
