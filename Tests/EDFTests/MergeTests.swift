import Glibc
import EDF
import ToolboxModel
import Foundation
import Testing
import ToolboxCore

/// A scratch directory of EDF files.
final class Files {
    let root: String

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("edf-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let path = root + "/" + name
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func merger(_ variables: [String: String] = [:], edfPath: [String]? = nil) -> Merger {
        Merger(searchPath: SearchPath(user: edfPath ?? [root + "/user"], system: [root + "/system"]), variables: variables, currentDirectory: root)
    }
}

struct MergeTests {
    /// spec.md section 1.9: the worked example from the raster test files.
    @Test func specExample() throws {
        let files = try Files()
        try files.write("table-anno.toml", """
            image = "ubuntu:anno"
            [annotations]
            two_plus_two = "four"
            minus_one = "three"
            quick = "maths"
            """)
        try files.write("top-simple-1.toml", "image = \"ubuntu:simple-1\"\nentrypoint = true\n")
        try files.write("table-env.toml", """
            image = "ubuntu:env"
            [env]
            two_plus_two = "four"
            minus_one = "three"
            quick = "maths"
            """)
        try files.write("base-multi-2.toml", """
            base_environment = ["./table-anno.toml", "./top-simple-1.toml", "./table-env.toml"]
            image = "ubuntu:multi-2"
            [annotations]
            quick = "algebra"
            [env]
            quick = "counting"
            """)
        var merger = files.merger()
        let edf = merger.merge(references: ["./base-multi-2.toml"])
        #expect(merger.diagnostics.isEmpty)
        #expect(edf.image?.value == "ubuntu:multi-2")
        #expect(edf.entrypoint?.value == true)
        #expect(edf.annotations?.mapValues(\.value) == ["two_plus_two": "four", "minus_one": "three", "quick": "algebra"])
        #expect(edf.env?.mapValues(\.value) == ["two_plus_two": "four", "minus_one": "three", "quick": "counting"])
        #expect(edf.entrypoint?.location == SourceLocation(file: files.root + "/top-simple-1.toml", line: 2))
        #expect(edf.baseEnvironment == nil)
    }

    /// Vectors concatenate, parents first, exact duplicates dropped (raster render_base_multi_vecs).
    @Test func vectorsConcatenate() throws {
        let files = try Files()
        try files.write("top-mounts.toml", #"mounts = ["/aaa:/bbb", "./ccc:./ddd", "/eee:./fff:ggg"]"#)
        try files.write("top-devices.toml", #"devices = ["dev1", "dev2", "dev3"]"#)
        try files.write("top-vecs.toml", #"mounts = ["/hhh:/iii", "./jjj:./kkk", "/aaa:/bbb"]"# + "\n" + #"devices = ["dev4", "dev5", "dev1"]"#)
        try files.write("multi.toml", #"base_environment = ["./top-mounts.toml", "./top-devices.toml", "./top-vecs.toml"]"#)
        var merger = files.merger()
        let edf = merger.merge(references: ["./multi.toml"])
        #expect(merger.diagnostics.isEmpty)
        #expect(edf.mounts?.map(\.value) == ["/aaa:/bbb", "./ccc:./ddd", "/eee:./fff:ggg", "/hhh:/iii", "./jjj:./kkk"])
        #expect(edf.devices?.map(\.value) == ["dev1", "dev2", "dev3", "dev4", "dev5"])
    }

    /// Nested chains: the nearest child wins; a parent listed twice is applied twice (later wins).
    @Test func nestedAndRepeatedParents() throws {
        let files = try Files()
        try files.write("user/simple-1.toml", "image = \"ubuntu:simple-1\"\nentrypoint = true\nwritable = false\n")
        try files.write("user/simple-2.toml", "image = \"ubuntu:simple-2\"\nentrypoint = false\n")
        try files.write("user/prio.toml", #"base_environment = ["simple-1", "simple-2", "simple-1"]"#)
        try files.write("user/anno.toml", "image = \"x\"\n[annotations]\nminus_one = \"three\"\n")
        try files.write("user/single.toml", "base_environment = \"anno\"\n[annotations]\nminus_one = \"hot\"\n")
        try files.write("user/nested.toml", "base_environment = \"single\"\n")
        var merger = files.merger()
        let prio = merger.merge(references: ["prio"])
        #expect(prio.image?.value == "ubuntu:simple-1")
        #expect(prio.entrypoint?.value == true)
        #expect(prio.writable?.value == false)
        let nested = merger.merge(references: ["nested"])
        #expect(nested.annotations?["minus_one"]?.value == "hot")
        #expect(merger.diagnostics.isEmpty)
    }

    /// Several references merge left to right like a base_environment list.
    @Test func referencesMergeLeftToRight() throws {
        let files = try Files()
        try files.write("user/a.toml", "image = \"a\"\nworkdir = \"/a\"\n[env]\nX = \"a\"\nY = \"a\"\n")
        try files.write("system/b.toml", "image = \"b\"\n[env]\nY = \"b\"\n")
        var merger = files.merger()
        let edf = merger.merge(references: ["a", "b"])
        #expect(edf.image?.value == "b")
        #expect(edf.workdir?.value == "/a")
        #expect(edf.env?.mapValues(\.value) == ["X": "a", "Y": "b"])
    }

    /// The user's directories win over the system directory, and EDF_PATH entries in order.
    @Test func searchPathOrder() throws {
        let files = try Files()
        try files.write("one/e.toml", "image = \"one\"")
        try files.write("two/e.toml", "image = \"two\"")
        try files.write("two/only.toml", "image = \"two-only\"")
        try files.write("system/e.toml", "image = \"system\"")
        try files.write("system/sys.toml", "image = \"system-only\"")
        try FileManager.default.createDirectory(atPath: files.root + "/one/only.toml", withIntermediateDirectories: true)
        var merger = files.merger(edfPath: [files.root + "/one", files.root + "/two"])
        #expect(merger.merge(references: ["e"]).image?.value == "one")
        #expect(merger.merge(references: ["only"]).image?.value == "two-only")
        #expect(merger.merge(references: ["sys"]).image?.value == "system-only")
        #expect(merger.errors.isEmpty)
    }

    @Test func searchPathFromEnvironment() {
        let (path, warnings) = SearchPath.from(environment: ["HOME": "/home/u"])
        #expect(path == SearchPath(user: ["/home/u/.edf"], system: ["/etc/edf"]))
        #expect(warnings.isEmpty)
        let (split, w2) = SearchPath.from(environment: ["EDF_PATH": "/a::/b:rel", "EDF_SYSTEM_PATH": "/site/edf"])
        #expect(split == SearchPath(user: ["/a", "/b"], system: ["/site/edf"]))
        #expect(w2.map(\.message) == ["EDF_PATH entry 'rel' is not an absolute path; ignored"])
        // A relative HOME gives no ~/.edf (it would depend on the current directory).
        #expect(SearchPath.from(environment: ["HOME": "rel"]).0 == SearchPath(user: [], system: ["/etc/edf"]))
    }

    /// Variables in base_environment entries are expanded before lookup.
    @Test func baseEnvironmentVariables() throws {
        let files = try Files()
        try files.write("proj/base.toml", "image = \"from-var\"")
        try files.write("child.toml", "base_environment = \"${PROJ}/base.toml\"")
        var merger = files.merger(["PROJ": files.root + "/proj"])
        #expect(merger.merge(references: ["./child.toml"]).image?.value == "from-var")
        #expect(merger.diagnostics.isEmpty)
    }

    @Test func cycleReportsChain() throws {
        let files = try Files()
        try files.write("a.toml", "base_environment = \"./b.toml\"\nimage = \"a\"")
        try files.write("b.toml", "base_environment = \"./a.toml\"")
        var merger = files.merger()
        _ = merger.merge(references: ["./a.toml"])
        let error = try #require(merger.errors.first)
        #expect(error.message == "cycle: a.toml -> b.toml -> a.toml")
        #expect(error.file == files.root + "/b.toml")
        #expect(error.line == 1)
        #expect(error.key == "base_environment")
    }

    @Test func depthLimit() throws {
        let files = try Files()
        for i in 1...11 {
            try files.write("l\(i).toml", i < 11 ? "base_environment = \"./l\(i + 1).toml\"" : "image = \"deep\"")
        }
        var ten = files.merger()
        try files.write("l10.toml", "image = \"ten\"")
        #expect(ten.merge(references: ["./l1.toml"]).image?.value == "ten")
        #expect(ten.errors.isEmpty)
        try files.write("l10.toml", "base_environment = \"./l11.toml\"")
        var eleven = files.merger()
        _ = eleven.merge(references: ["./l1.toml"])
        #expect(eleven.errors.map(\.message) == ["base_environment nesting is deeper than 10 levels (\(files.root)/l11.toml)"])
    }

    /// Each file is read and merged once however often it is listed: nine levels of files that
    /// each list their parent ten times (10^9 visits if each were followed) give the merged
    /// result and each problem once; a parent listed again below where it fits is too deep once.
    @Test func parentsListedManyTimesAreResolvedOnce() throws {
        let files = try Files()
        try files.write("l0.toml", "image = \"leaf\"\nmounts = [\"/tmp:/x\"]\n")
        for level in 1...9 {
            let parents = Array(repeating: "\"./l\(level - 1).toml\"", count: 10).joined(separator: ", ")
            try files.write("l\(level).toml", "base_environment = [\(parents)]\n[env]\nL\(level) = \"\(level)\"\n")
        }
        var merger = files.merger()
        let merged = merger.merge(references: ["./l9.toml"])
        #expect(merger.diagnostics.isEmpty)
        #expect(merged.image?.value == "leaf" && merged.mounts?.count == 1 && merged.env?.count == 9)
        try files.write("l10.toml", "base_environment = [\"./l9.toml\", \"./l9.toml\"]\n")
        var tooDeep = files.merger()
        _ = tooDeep.merge(references: ["./l10.toml"])
        #expect(tooDeep.errors.map(\.message) == ["base_environment nesting is deeper than 10 levels (\(files.root)/l0.toml)"])
        try files.write("l0.toml", "image = 5\n")
        var wrong = files.merger()
        _ = wrong.merge(references: ["./l9.toml"])
        #expect(wrong.errors.count == 1, "\(wrong.errors)")
    }

    /// A fifo is never opened for reading (it would wait forever): skipped on the search path,
    /// refused as a path; a symbolic link loop is said to be one, not "does not exist".
    @Test func fifosAndLinkLoopsAreNotRead() throws {
        let files = try Files()
        try FileManager.default.createDirectory(atPath: files.root + "/user", withIntermediateDirectories: true)
        #expect(mkfifo(files.root + "/user/f.toml", 0o644) == 0)
        try files.write("system/f.toml", "image = \"fallback\"\n")
        var merger = files.merger()
        #expect(merger.merge(references: ["f"]).image?.value == "fallback")
        #expect(merger.diagnostics.isEmpty)
        var explicit = files.merger()
        _ = explicit.merge(references: ["./user/f.toml"])
        #expect(explicit.errors.map(\.message) == ["is not a regular file (a fifo, a device or a socket)"])
        try FileManager.default.createSymbolicLink(atPath: files.root + "/loop.toml", withDestinationPath: "loop.toml")
        var loop = files.merger()
        _ = loop.merge(references: ["./loop.toml"])
        #expect(loop.errors.map(\.message) == ["cannot open: too many levels of symbolic links"])
    }

    @Test func allTypeErrorsOfAFileAtOnce() throws {
        let files = try Files()
        try files.write("bad.toml", """
            image = 3
            writable = "yes"
            entrypoint = "true"
            mounts = "/a:/b"
            devices = [1]
            [env]
            N = 1
            """)
        var merger = files.merger()
        _ = merger.merge(references: ["./bad.toml"])
        #expect(merger.errors.map(\.description) == [
            "\(files.root)/bad.toml:5: key 'devices[0]': expected a string, found an integer 1",
            "\(files.root)/bad.toml:3: key 'entrypoint': expected a boolean (true or false), found a string \"true\"",
            "\(files.root)/bad.toml:7: key 'env.N': expected a string, found an integer 1",
            "\(files.root)/bad.toml:1: key 'image': expected a string, found an integer 3",
            "\(files.root)/bad.toml:4: key 'mounts': expected an array of strings, found a string \"/a:/b\"",
            "\(files.root)/bad.toml:2: key 'writable': expected a boolean (true or false), found a string \"yes\"",
        ])
        #expect(merger.errors.first { $0.key == "entrypoint" }?.hint == "write entrypoint = true, without quotes")
    }

    /// The TOML that edf-merge prints is a valid EDF that merges to the same definition.
    @Test func tomlOutputRoundTrips() throws {
        let files = try Files()
        try files.write("x.toml", #"""
            image = "nvcr.io#nvidia/pytorch:24.01-py3"
            workdir = "${SCRATCH}/run"
            entrypoint = false
            writable = false
            mounts = ["/a:/b:ro", "${HOME}:${HOME}", "tmpfs:/tmp:size=1G"]
            devices = []
            extra = { nested = [1, 2.5, true, "s"], when = 1979-05-27T07:32:00Z }
            [env]
            PATH = "/opt/bin:$$PATH"
            "WEIRD NAME" = "quote \" and \\ and\ttab"
            EMPTY = ""
            [annotations]
            com.hooks.ssh.enabled = "true"
            com.hooks.ssh.port = 2222
            "quoted.key" = "q"
            a = "x"
            a.b = "conflict"
            """#.replacingOccurrences(of: "a = \"x\"\na.b = \"conflict\"", with: "[annotations.a]\nb = \"conflict\""))
        var merger = files.merger()
        let edf = merger.merge(references: ["./x.toml"])
        #expect(merger.errors.isEmpty)
        let text = edf.tomlText
        let (reparsed, problems) = EnvironmentDefinition.parse(text, file: "out.toml", warnUnknownKeys: false)
        #expect(problems.isEmpty, "\(problems)\n\(text)")
        let again = try #require(reparsed)
        #expect(again.image?.value == edf.image?.value)
        #expect(again.workdir?.value == edf.workdir?.value)
        #expect(again.writable?.value == false)
        #expect(again.mounts?.map(\.value) == edf.mounts?.map(\.value))
        #expect(again.devices?.map(\.value) == [])
        #expect(again.env?.mapValues(\.value) == edf.env?.mapValues(\.value))
        #expect(again.annotations?.mapValues(\.value) == edf.annotations?.mapValues(\.value))
        #expect(again.annotations?["com.hooks.ssh.port"]?.value == "2222")
        #expect(again.unknown.mapValues(\.value) == edf.unknown.mapValues(\.value))
    }

    @Test func annotationPrefixClashIsQuoted() throws {
        var edf = EnvironmentDefinition()
        let at = SourceLocation(file: "f")
        edf.annotations = ["a": Located("1", at: at), "a.b": Located("2", at: at)]
        #expect(edf.tomlText == "\n[annotations]\n\"a\" = \"1\"\n\"a.b\" = \"2\"\n")
        let (back, problems) = EnvironmentDefinition.parse(edf.tomlText, file: "f")
        #expect(problems.isEmpty)
        #expect(back?.annotations?.mapValues(\.value) == ["a": "1", "a.b": "2"])
    }

    @Test func jsonInputIsEquivalent() throws {
        let json = #"{"image": "ubuntu", "entrypoint": true, "mounts": ["/a:/b"], "env": {"X": "1"}, "annotations": {"com.x.y": "z"}, "workdir": null}"#
        let (edf, problems) = EnvironmentDefinition.parse(json, file: "in.json")
        #expect(problems.isEmpty)
        #expect(edf?.image?.value == "ubuntu")
        #expect(edf?.workdir == nil)
        #expect(edf?.annotations?["com.x.y"]?.value == "z")
        // A variable given as null is unset, as "" is (spec 1.6).
        let (unset, found) = EnvironmentDefinition.parse(#"{"image": "u", "env": {"A": null, "B": "x"}}"#, file: "in.json")
        #expect(found.isEmpty && unset?.env?["A"]?.value == "" && unset?.env?["B"]?.value == "x")
    }

    /// "a.b" = ... and a.b = ... are two keys to TOML but one annotation: an error, not a choice.
    @Test func annotationGivenTwiceIsAnError() throws {
        let text = "[annotations]\n\"com.hooks.x\" = \"a\"\ncom.hooks.x = \"b\"\n"
        let (_, problems) = EnvironmentDefinition.parse(text, file: "a.toml", warnUnknownKeys: false)
        let error = try #require(problems.first)
        #expect(problems.count == 1)
        #expect(error.key == "annotations.com.hooks.x")
        #expect(error.message.hasPrefix("the annotation is given twice"))
        // Different annotations that share a prefix are fine.
        let (edf, none) = EnvironmentDefinition.parse("[annotations]\n\"a.b\" = \"1\"\na.c = \"2\"\n", file: "b.toml")
        #expect(none.isEmpty)
        #expect(edf?.annotations?.mapValues(\.value) == ["a.b": "1", "a.c": "2"])
    }

    /// As the reference system: a path to an EDF must name a .toml file.
    @Test func pathsMustEndInToml() throws {
        let files = try Files()
        try files.write("env.edf", "image = \"x\"\n")
        try files.write("user/team/pytorch.toml", "image = \"y\"\n")
        var merger = files.merger()
        _ = merger.merge(references: ["./env.edf"])
        #expect(merger.errors.map(\.message) == ["\(files.root)/env.edf: the file name does not end in .toml"])
        // A name with a '/' is looked up in the search path.
        var named = files.merger()
        let edf = named.merge(references: ["team/pytorch"])
        #expect(named.errors.isEmpty)
        #expect(edf.image?.value == "y")
    }

    /// Files the job's user cannot read (an image, a Containerfile, a sqsh mount's image) are
    /// refused at once (66), not found out by a later stage; a bind mount's source need not be
    /// readable (mount does not read it).
    @Test func unreadableFilesAreRefused() throws {
        var edf = EnvironmentDefinition()
        let at = SourceLocation(file: "f.toml", line: 1)
        edf.image = Located("/images/secret.sqsh", at: at)
        edf.containerfile = Located("/images/Containerfile", at: at)
        edf.mounts = [Located("/images/data.sqsh:/data:sqsh", at: at), Located("/images/dir:/dir", at: at)]
        var renderer = Renderer(variables: [:], currentDirectory: "/")
        renderer.fileKind = { $0.hasSuffix("dir") ? .directory : .regularFile }
        renderer.unreadable = { _ in "permission denied" }
        let (_, problems) = renderer.render(edf)
        #expect(problems.map(\.message).sorted() == [
            "Containerfile /images/Containerfile cannot be read: permission denied",
            "image file /images/secret.sqsh cannot be read: permission denied",
            "sqsh source /images/data.sqsh cannot be read: permission denied",
        ])
        #expect(problems.allSatisfy { $0.kind == .unreadable })
    }

    /// Pyxis's special mount sources and destinations: umount, and destinations from '.'.
    @Test func umountAndDestinationsFromTheRoot() throws {
        var edf = EnvironmentDefinition()
        let at = SourceLocation(file: "f.toml", line: 1)
        edf.image = Located("ubuntu", at: at)
        edf.mounts = [Located("umount:/opt/site", at: at), Located("/tmp:./data", at: at), Located("tmpfs:../../scratch", at: at)]
        let (document, problems) = Renderer(variables: [:], currentDirectory: "/").render(edf)
        #expect(problems.isEmpty, "\(problems)")
        let mounts = document.mounts
        #expect(mounts.map(\.type) == [.detach, .bind, .tmpfs])
        #expect(mounts.map(\.destination) == ["/opt/site", "/data", "/scratch"])
        edf.mounts = [Located("umount:/opt/site:ro", at: at)]
        let (_, refused) = Renderer(variables: [:], currentDirectory: "/").render(edf)
        #expect(refused.map(\.message) == ["\"umount:/opt/site:ro\": umount takes a destination and no flags"])
    }

    /// Each element of a multi-line array is reported at its own line.
    @Test func arrayElementsHaveTheirOwnLines() throws {
        let text = """
            image = "x"
            mounts = [
              "/a:/b",   # a comment, with "quotes" and ]
              '/c:/d',
              \"\"\"/e:/f\"\"\",
              # "not an element"
              "/g:/h", "/i:/j",
              "/k:/[l]"
            ]
            devices = ["/dev/x"]
            [env]
            A = "1"
            """
        let (edf, problems) = EnvironmentDefinition.parse(text, file: "m.toml")
        #expect(problems.isEmpty, "\(problems)")
        let mounts = try #require(edf?.mounts)
        #expect(mounts.map(\.value) == ["/a:/b", "/c:/d", "/e:/f", "/g:/h", "/i:/j", "/k:/[l]"])
        #expect(mounts.map(\.location.line) == [3, 4, 5, 7, 7, 8])
        #expect(edf?.devices?.map(\.location.line) == [10])
        #expect(edf?.env?["A"]?.location.line == 12)
    }

    /// Triple quotes inside one-line strings and comments open no multi-line string; multi-line
    /// strings of both kinds, with quotes at their end, close where they do.
    @Test func tripleQuotesInsideStringsKeepTheLines() throws {
        let text = #"""
            image = "u"
            [env]
            Q = '"""'
            A = "x" # """
            B = """
            two "" lines\""""
            C = '''
            ''''
            D = "\"\"\""
            E = "e"
            """#
        let (edf, problems) = EnvironmentDefinition.parse(text, file: "q.toml")
        #expect(problems.isEmpty, "\(problems)")
        let env = try #require(edf?.env)
        #expect(["Q", "A", "B", "C", "D", "E"].map { env[$0]?.location.line } == [3, 4, 5, 7, 9, 10])
    }
}
