import Build
import Foundation
import Testing

struct ContainerfileTests {
    @Test func instructionsContinuationsAndComments() {
        let file = Containerfile(text: """
            # syntax comment
            ARG BASE_IMAGE=x
            from --platform=linux/amd64 $BASE_IMAGE AS base
            RUN a && \\
            # a comment inside
                b

            ENV A=1
            """)
        #expect(file.instructions.map(\.keyword) == ["ARG", "FROM", "RUN", "ENV"])
        #expect(file.instructions[2].arguments == "a &&  b" && file.instructions[2].line == 4 && !file.instructions[2].singleLine)
        #expect(Containerfile.image(of: file.instructions[1]) == "$BASE_IMAGE")
        #expect(file.fromUses(argument: "BASE_IMAGE") && !file.fromUses(argument: "OTHER"))
        #expect(file.declares(argument: "BASE_IMAGE") && !file.declares(argument: "BASE"))
    }

    @Test func fromLinesNamingTheBaseAreRewritten() {
        let file = Containerfile(text: "FROM nvcr.io/nvidia/pytorch:24.01-py3 AS build\nRUN x\nFROM alpine\n")
        let rewritten = file.replacingFrom(where: { $0 == "nvcr.io/nvidia/pytorch:24.01-py3" }, with: "toolbox-base:abc")
        #expect(rewritten == "FROM toolbox-base:abc AS build\nRUN x\nFROM alpine\n")
        #expect(file.replacingFrom(where: { _ in false }, with: "x") == nil)
    }

    @Test func entrypointAndCmdAsDockerAppliesThem() {
        let shell = ["/bin/sh", "-c"]
        let inherited = (entrypoint: [String]?.none, cmd: Optional(["bash"]))
        // ENTRYPOINT resets an inherited CMD; a later CMD sets it again.
        let a = Containerfile(text: "FROM x\nENTRYPOINT [\"/bin/run\"]\n").command(inheriting: inherited, shell: shell)
        #expect(a.entrypoint == ["/bin/run"] && a.cmd == nil)
        let b = Containerfile(text: "FROM x\nCMD python -V\nENTRYPOINT [\"/bin/run\"]\n").command(inheriting: inherited, shell: shell)
        #expect(b.entrypoint == ["/bin/run"] && b.cmd == ["/bin/sh", "-c", "python -V"])
        // Only the final stage counts.
        let c = Containerfile(text: "FROM x\nCMD [\"one\"]\nFROM y\n").command(inheriting: inherited, shell: shell)
        #expect(c.entrypoint == nil && c.cmd == ["bash"])
    }

    /// A final stage FROM scratch, directly or through a stage's name, inherits nothing.
    @Test func aFinalStageFromScratch() {
        #expect(Containerfile(text: "FROM base AS b\nRUN x\nFROM scratch\nCOPY --from=b /x /x\n").finalStageIsScratch)
        #expect(Containerfile(text: "FROM Scratch AS empty\nFROM empty\n").finalStageIsScratch)
        #expect(!Containerfile(text: "FROM scratch AS s\nFROM base\n").finalStageIsScratch)
        #expect(!Containerfile(text: "FROM base AS a\nFROM a AS b\nFROM b\n").finalStageIsScratch)
    }

    /// LABEL values with variables, as Docker replaces them: build arguments (else ARG defaults,
    /// also global ones a stage takes up), the base's environment, the stage's ENVs; not in
    /// single quotes, not escaped.
    @Test func labelVariablesAreReplaced() {
        let file = Containerfile(text: """
            ARG GLOBAL=g1
            FROM base
            ARG GLOBAL
            ARG V=argval
            ARG GIVEN=default
            ENV E=envval SAME="${E}-x"
            ENV OTHER="${E}-x"
            ENV OLD old form
            LABEL v=$V e=${E} o=$OTHER same=$SAME g=${GLOBAL} given=$GIVEN base=$FROM_BASE
            LABEL quoted="$V and ${E}" single='$V' escaped=\\$V none=${NOPE} dflt=${NOPE:-d} alt=${V:+yes} old="$OLD"
            """)
        let labels = file.labels(inheriting: ["kept": "1", "v": "base"], environment: ["FROM_BASE=b"], arguments: ["GIVEN": "given"])
        #expect(labels == [
            // (As Docker: one ENV's assignments see the values from before it.)
            "kept": "1", "v": "argval", "e": "envval", "o": "envval-x", "same": "-x", "g": "g1", "given": "given", "base": "b",
            "quoted": "argval and envval", "single": "$V", "escaped": "$V", "none": "", "dflt": "d", "alt": "yes", "old": "old form",
        ])
    }
}

struct BuildKeyTests {
    @Test func theKeyFollowsTheContextAndNothingElse() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("build-key-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "FROM x\n".write(toFile: root + "/Containerfile", atomically: true, encoding: .utf8)
        try "data".write(toFile: root + "/sub/file", atomically: true, encoding: .utf8)
        func key(base: String? = "sha256:1", args: [String: String] = [:], builder: String = "ch-image") throws -> String {
            try BuildKey(
                containerfile: Array("FROM x\n".utf8), context: root, base: base, buildArgs: args, builder: builder, architecture: "amd64"
            ).digest().description
        }
        let first = try key()
        #expect(try key() == first)
        // The same content written again (a new time) is the same key.
        try "data".write(toFile: root + "/sub/file", atomically: true, encoding: .utf8)
        #expect(try key() == first)
        #expect(try key(base: "sha256:2") != first)
        #expect(try key(args: ["A": "1"]) != first)
        #expect(try key(builder: "buildah") != first)
        try "dat4".write(toFile: root + "/sub/file", atomically: true, encoding: .utf8)
        let changed = try key()
        #expect(changed != first)
        chmod(root + "/sub/file", 0o755)
        let executable = try key()
        #expect(executable != changed)
        symlink("file", root + "/sub/link")
        let linked = try key()
        #expect(linked != executable)
        unlink(root + "/sub/link")
        symlink("other", root + "/sub/link")
        #expect(try key() != linked)
    }

    @Test func anUnreadableContextFileIsAnError() throws {
        guard getuid() != 0 else {
            print("skipped: root reads every file; the unreadable file needs another user")
            return
        }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("build-key-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "secret".write(toFile: root + "/secret", atomically: true, encoding: .utf8)
        chmod(root + "/secret", 0)
        #expect(throws: (any Error).self) {
            try BuildKey(containerfile: [], context: root, base: nil, buildArgs: [:], builder: "ch-image", architecture: "amd64").digest()
        }
    }
}
