import ArgumentParser
import Testing

@testable import RuntimeCommands

/// ns-enter's fast argument parser must agree with swift-argument-parser wherever it answers,
/// and leave everything else (help, errors, unusual forms) to it.
@Suite struct FastParseTests {
    static let accepted: [[String]] = [
        ["--image", "/i.sqsh", "--", "/bin/true"],
        ["-e", "env.json", "--", "python3", "-c", "print(1)"],
        ["--environment=env.json", "--name", "1.0", "--", "a", "--", "b"],
        ["--image", "/i", "--mount", "/a:/b:ro", "--mount=tmpfs:/t", "--env", "A=1", "--env=B=", "--workdir", "/w",
         "--writable", "--no-entrypoint", "--annotation", "x.y=z", "--root", "--no-hooks", "--hook-timeout", "2.5", "--", "cmd"],
        ["--image", "/i", "--no-writable", "--entrypoint", "--"],
        ["--join", "1234", "--", "true"],
        ["--image", "/a", "--image", "/b", "--", "true"],
    ]

    static let declined: [[String]] = [
        ["--help"], ["-h"], ["--image"], ["--image", "--", "x"], ["--image", "/i", "cmd"], ["--bogus", "--", "x"],
        ["--join", "abc", "--", "x"], ["--writable=yes", "--image", "/i", "--", "x"], ["--", "true"],
        ["--join", "1", "--image", "/i", "--", "x"], ["--image", "/i", "--name", "a/b", "--", "x"],
        ["--hook-timeout", "soon", "--image", "/i", "--", "x"], ["--generate-completion-script", "bash"],
    ]

    @Test(arguments: accepted)
    func agreesWithArgumentParser(_ arguments: [String]) throws {
        let fast = try #require(NamespaceEnter.parseQuickly(arguments), "the fast parser declined \(arguments)")
        let parsed = try #require(try NamespaceEnter.parseAsRoot(arguments) as? NamespaceEnter)
        #expect(fast == NamespaceEnter.Options(parsed), "\(arguments)")
    }

    @Test(arguments: declined)
    func leavesTheRestToArgumentParser(_ arguments: [String]) {
        #expect(NamespaceEnter.parseQuickly(arguments) == nil, "\(arguments)")
    }
}
