import EDF
import Testing

struct VariableExpanderTests {
    let expander = VariableExpander(variables: ["HOME": "/home/u", "SCRATCH": "/scratch/u", "EMPTY": "", "A_1": "x"])

    static let cases: [(String, String)] = [
        ("plain", "plain"),
        ("${HOME}", "/home/u"),
        ("$HOME/x", "/home/u/x"),
        ("$A_1$A_1", "xx"),
        ("${SCRATCH}:${SCRATCH}", "/scratch/u:/scratch/u"),
        ("${MISSING:-default}", "default"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${MISSING:-}", ""),
        ("${MISSING:-${HOME}/d}", "/home/u/d"),
        ("$$", "$"),
        ("$${HOME}", "${HOME}"),
        ("cost: $$5", "cost: $5"),
        ("$HOME.d", "/home/u.d"),
        ("ünïcode ${HOME}", "ünïcode /home/u"),
        ("${MISSING:-$${x}}", "${x}"),
        (String(repeating: "${MISSING:-", count: 32) + "deep" + String(repeating: "}", count: 32), "deep"),
    ]

    @Test(arguments: cases)
    func expands(_ c: (String, String)) throws {
        #expect(try expander.expand(c.0) == c.1)
    }

    static let failures: [(String, VariableExpander.Failure)] = [
        ("${MISSING}", .undefined("MISSING")),
        ("$MISSING/x", .undefined("MISSING")),
        ("${HOME", .unterminated),
        ("${1X}", .invalidName("1X")),
        ("${}", .invalidName("")),
        ("a$", .loneDollar),
        ("$ x", .loneDollar),
        ("${MISSING:-${ALSO_MISSING}}", .undefined("ALSO_MISSING")),
        (String(repeating: "${MISSING:-", count: 33) + "deep" + String(repeating: "}", count: 33), .nestedTooDeep),
    ]

    @Test(arguments: failures)
    func fails(_ c: (String, VariableExpander.Failure)) {
        #expect(throws: c.1) { try expander.expand(c.0) }
    }

    @Test func splitKeepsDefaultsWhole() {
        #expect(VariableExpander.split("${A:-/x}:/dst:ro", on: ":") == ["${A:-/x}", "/dst", "ro"])
        #expect(VariableExpander.split("/a:/b", on: ":") == ["/a", "/b"])
        #expect(VariableExpander.split("/a", on: ":") == ["/a"])
        // $$ is a literal $: what follows it opens no reference.
        #expect(VariableExpander.split("./lit$${x:/d2", on: ":") == ["./lit$${x", "/d2"])
        #expect(VariableExpander.split("$$$${A}:/d", on: ":") == ["$$$${A}", "/d"])
        #expect(VariableExpander.split("$$${A:-a:b}:/d", on: ":") == ["$$${A:-a:b}", "/d"])
    }
}
