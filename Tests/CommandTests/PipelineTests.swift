import Foundation
import Testing

/// The EDF stages run as users run them: alone on files, and as a pipe.
struct PipelineTests {
    /// A two-level chain through the search path, with variables, relative paths, every mount type.
    func chain(_ box: Sandbox) throws {
        try box.write(".edf/site.toml", """
            image = "nvcr.io#nvidia/pytorch:24.01-py3"
            mounts = ["${SCRATCH}:${SCRATCH}", "tmpfs:/tmp:size=1G"]
            [env]
            NCCL_DEBUG = "WARN"
            UNSET_ME = "x"
            [annotations.com.hooks]
            cxi.enabled = "true"
            """)
        try box.write("data.sqsh", "not really squashfs, but a regular file")
        try box.mkdir("scratch")
        try box.write(".edf/pytorch.toml", """
            base_environment = "site"
            workdir = "${SCRATCH}/run"
            entrypoint = true
            mounts = ["./data.sqsh:/data:sqsh", "/tmp:/host-tmp:ro+private", "${SCRATCH}:${SCRATCH}"]
            devices = ["nvidia.com/gpu=all"]
            [env]
            UNSET_ME = ""
            PRICE = "$$5"
            [annotations]
            com.hooks.ssh.enabled = true
            """)
    }

    /// A bare name is an EDF name even when the current directory has a directory of that name
    /// (srun --environment=bench run from a checkout with a bench/ directory).
    /// A single path mounts the path at itself, as written (Pyxis: DST = SRC): "./data" is the
    /// host's ./data at /data in the container, not at the host's absolute path.
    @Test func aSinglePathMountsAtItself() throws {
        let box = try Sandbox()
        try box.mkdir("data")
        try box.write("single.toml", "mounts = [\"./data\", \"\(box.path)/data\", \"./data:./inner\"]\n")
        let result = try box.run("edf-expand", ["./single.toml"])
        #expect(result.status == 0, "\(result)")
        let mounts = try #require(try box.json(result)["mounts"] as? [[String: Any]])
        #expect(mounts.map { $0["destination"] as? String } == ["/data", box.path + "/data", "/inner"])
        #expect(mounts.map { $0["source"] as? String } == [box.path + "/data", box.path + "/data", box.path + "/data"])
    }

    @Test func aBareNameIsSearchedEvenBesideADirectoryOfThatName() throws {
        let box = try Sandbox()
        try box.mkdir("bench")
        try box.write(".edf/bench.toml", "image = \"ubuntu:24.04\"\n")
        let result = try box.run("edf-expand", ["bench"])
        #expect(result.status == 0 && result.stdout.contains("\"reference\" : \"registry-1.docker.io/library/ubuntu:24.04\""), "\(result)")
    }

    @Test func expandRendersTheDocument() throws {
        let box = try Sandbox()
        try chain(box)
        let result = try box.run("edf-expand", ["pytorch"], environment: ["SCRATCH": box.path + "/scratch"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr == "")
        let expected = """
            {
              "annotations" : {
                "com.hooks.cxi.enabled" : "true",
                "com.hooks.ssh.enabled" : "true"
              },
              "devices" : [
                "nvidia.com/gpu=all"
              ],
              "entrypoint" : true,
              "env" : {
                "NCCL_DEBUG" : "WARN",
                "PRICE" : "$5",
                "UNSET_ME" : ""
              },
              "image" : {
                "digest" : null,
                "reference" : "nvcr.io/nvidia/pytorch:24.01-py3",
                "registry" : "nvcr.io",
                "repository" : "nvidia/pytorch",
                "tag" : "24.01-py3"
              },
              "mounts" : [
                {
                  "destination" : "$D/scratch",
                  "options" : [

                  ],
                  "source" : "$D/scratch",
                  "type" : "bind"
                },
                {
                  "destination" : "/tmp",
                  "options" : [
                    "size=1G"
                  ],
                  "source" : "tmpfs",
                  "type" : "tmpfs"
                },
                {
                  "destination" : "/data",
                  "options" : [

                  ],
                  "source" : "$D/data.sqsh",
                  "type" : "squashfs"
                },
                {
                  "destination" : "/host-tmp",
                  "options" : [
                    "ro",
                    "private"
                  ],
                  "source" : "/tmp",
                  "type" : "bind"
                }
              ],
              "schemaVersion" : 1,
              "workdir" : "$D/scratch/run",
              "writable" : true
            }

            """
        #expect(result.stdout == expected.replacingOccurrences(of: "$D", with: box.path))
    }

    /// `edf-merge NAME | edf-expand`, as TOML and as JSON, gives what `edf-expand NAME` gives.
    @Test func mergeThenExpandIsAPipe() throws {
        let box = try Sandbox()
        try chain(box)
        let env = ["SCRATCH": box.path + "/scratch"]
        let direct = try box.run("edf-expand", ["pytorch"], environment: env)
        let mergedTOML = try box.run("edf-merge", ["pytorch"], environment: env)
        let mergedJSON = try box.run("edf-merge", ["--json", "pytorch"], environment: env)
        #expect(mergedTOML.status == 0 && mergedJSON.status == 0)
        let fromTOML = try box.run("edf-expand", [], environment: env, stdin: mergedTOML.stdout)
        let fromJSON = try box.run("edf-expand", ["-"], environment: env, stdin: mergedJSON.stdout)
        #expect(direct.status == 0)
        #expect(fromTOML.stdout == direct.stdout, "\(fromTOML)")
        #expect(fromJSON.stdout == direct.stdout, "\(fromJSON)")
        // Each stage alone on a saved file.
        try box.write("merged.toml", mergedTOML.stdout)
        let fromFile = try box.run("edf-expand", ["merged.toml"], environment: env)
        #expect(fromFile.stdout == direct.stdout)
        let check = try box.run("edf-expand", ["--check", "merged.toml"], environment: env)
        #expect(check.status == 0 && check.stdout.isEmpty && check.stderr.isEmpty)
    }

    @Test func mergePrintsAValidEDF() throws {
        let box = try Sandbox()
        try chain(box)
        let result = try box.run("edf-merge", ["pytorch"])
        #expect(result.status == 0)
        #expect(result.stderr == "")
        #expect(result.stdout == """
            image = "nvcr.io#nvidia/pytorch:24.01-py3"
            workdir = "${SCRATCH}/run"
            entrypoint = true
            mounts = [
              "${SCRATCH}:${SCRATCH}",
              "tmpfs:/tmp:size=1G",
              "./data.sqsh:/data:sqsh",
              "/tmp:/host-tmp:ro+private",
            ]
            devices = [
              "nvidia.com/gpu=all",
            ]

            [env]
            NCCL_DEBUG = "WARN"
            PRICE = "$$5"
            UNSET_ME = ""

            [annotations]
            com.hooks.cxi.enabled = "true"
            com.hooks.ssh.enabled = "true"

            """)
    }

    @Test func explainNamesTheFileOfEachField() throws {
        let box = try Sandbox()
        try chain(box)
        let result = try box.run("edf-merge", ["--explain", "pytorch"])
        #expect(result.status == 0)
        let site = box.path + "/.edf/site.toml"
        let top = box.path + "/.edf/pytorch.toml"
        // Fields are padded to the longest name plus two spaces.
        func row(_ field: String, _ place: String) -> String {
            field + String(repeating: " ", count: 35 - field.count) + place + "\n"
        }
        let expected = [
            row("image", "\(site):1"), row("workdir", "\(top):2"), row("entrypoint", "\(top):3"),
            row("mounts[0]", "\(site):2"), row("mounts[1]", "\(site):2"), row("mounts[2]", "\(top):4"),
            row("mounts[3]", "\(top):4"), row("devices[0]", "\(top):5"), row("env.NCCL_DEBUG", "\(site):4"),
            row("env.PRICE", "\(top):8"), row("env.UNSET_ME", "\(top):7"),
            row("annotations.com.hooks.cxi.enabled", "\(site):7"), row("annotations.com.hooks.ssh.enabled", "\(top):10"),
        ]
        #expect(result.stdout == expected.joined(), "\(result)")
        let json = try box.run("edf-merge", ["--explain", "--json", "pytorch"])
        let object = try box.json(json)
        let image = try #require(object["image"] as? [String: Any])
        #expect(image["file"] as? String == site)
        #expect(image["line"] as? Int == 1)
        #expect(image["value"] as? String == "nvcr.io#nvidia/pytorch:24.01-py3")
    }

    @Test func unknownKeysAreKeptAndWarned() throws {
        let box = try Sandbox()
        try box.write("typo.toml", "image = \"ubuntu\"\nmount = [\"/a:/b\"]\n")
        let result = try box.run("edf-merge", ["./typo.toml"])
        #expect(result.status == 0)
        #expect(result.stdout == "image = \"ubuntu\"\nmount = [\"/a:/b\"]\n")
        #expect(result.stderr == "edf-merge: warning: \(box.path)/typo.toml:2: key 'mount': unknown key, kept but not used\n  hint: did you mean 'mounts'?\n")
        let expand = try box.run("edf-expand", ["typo.toml"])
        #expect(expand.status == 0)
        #expect(expand.stderr == result.stderr.replacingOccurrences(of: "edf-merge:", with: "edf-expand:"))
        #expect(try box.json(expand)["mount"] == nil)
        // The same typo in JSON input is warned about too.
        try box.write("typo.json", "{\"image\": \"ubuntu\", \"mount\": [\"/a:/b\"]}")
        let json = try box.run("edf-expand", ["typo.json"])
        #expect(json.status == 0 && json.stderr.contains("key 'mount': unknown key, kept but not used\n  hint: did you mean 'mounts'?"), "\(json)")
    }

    /// The search path's first readable file wins: one this user cannot read is passed over, and
    /// named when nothing else is found.
    @Test func anUnreadableFileOnTheSearchPathIsPassedOver() throws {
        guard let entry = getpwnam("tbxtest") else {
            print("skipped: no user tbxtest (contrib/test.sh creates it)")
            return
        }
        let box = try Sandbox()
        try box.write("a/r.toml", "image = \"from-a\"\n")
        try box.write("b/r.toml", "image = \"from-b\"\n")
        chmod(box.path + "/a/r.toml", 0o000)
        chmod(box.path + "/b/r.toml", 0o644)
        let asUser = ["--reuid=\(entry.pointee.pw_uid)", "--regid=\(entry.pointee.pw_gid)", "--clear-groups", Tools.path("edf-expand"), "r"]
        let found = try Tools.run(absolute: "/usr/bin/setpriv", asUser, environment: ["EDF_PATH": box.path + "/a:" + box.path + "/b", "HOME": "/tmp"], in: box.url)
        #expect(found.status == 0 && found.stdout.contains("from-b"), "\(found)")
        let alone = try Tools.run(absolute: "/usr/bin/setpriv", asUser, environment: ["EDF_PATH": box.path + "/a", "HOME": "/tmp"], in: box.url)
        #expect(alone.status == 66 && alone.stderr.hasPrefix("edf-expand: error: \(box.path)/a/r.toml: cannot read: permission denied (no other r.toml on the search path)\n"), "\(alone)")
    }

    @Test func defaultsAndAnEmptyEDF() throws {
        let box = try Sandbox()
        let result = try box.run("edf-expand", [], stdin: "")
        #expect(result.status == 0)
        #expect(result.stdout == """
            {
              "annotations" : {

              },
              "entrypoint" : false,
              "env" : {

              },
              "image" : null,
              "mounts" : [

              ],
              "schemaVersion" : 1,
              "workdir" : null,
              "writable" : true
            }

            """)
    }

    @Test func localImagePathIsMadeAbsolute() throws {
        let box = try Sandbox()
        try box.write("img/app.sqsh", "squashfs")
        try box.write("e.toml", "image = \"./img/app.sqsh\"\n")
        let object = try box.json(try box.run("edf-expand", ["e.toml"]))
        #expect(object["image"] as? [String: String] == ["path": box.path + "/img/app.sqsh"])
    }

    /// Every stage takes `-` for its document on stdin; img-squash names the key at fault in an
    /// environment document that was edited by hand.
    @Test func stagesTakeDashForStdinAndNameBadKeys() throws {
        let box = try Sandbox()
        try box.write("img/app.sqsh", "squashfs")
        try box.write("e.toml", "image = \"./img/app.sqsh\"\n")
        let document = try box.run("edf-expand", ["e.toml"])
        let pulled = try box.run("img-pull", ["-", "-q"], stdin: document.stdout)
        #expect(pulled.status == 0 && pulled.stdout == document.stdout, "\(pulled)")
        let squashed = try box.run("img-squash", ["-", "-q"], stdin: pulled.stdout)
        #expect(squashed.status == 0 && squashed.stdout == document.stdout, "\(squashed)")
        let edited = document.stdout.replacing("\"entrypoint\" : false", with: "\"entrypoint\" : \"no\"")
        #expect(edited != document.stdout)
        let refused = try box.run("img-squash", ["-q"], stdin: edited)
        #expect(refused.status == 65 && refused.stderr.hasPrefix("img-squash: error: <stdin>: not an environment document: ") && refused.stderr.contains("entrypoint"), "\(refused)")
        // The document fed back to edf-expand: said what it is.
        try box.write("doc.json", document.stdout)
        let again = try box.run("edf-expand", ["doc.json"])
        #expect(again.status == 65, "\(again)")
        #expect(again.stderr == "edf-expand: error: \(box.path)/doc.json: this is an environment document (what edf-expand and the later stages write), not an EDF\n  hint: give it to img-pull, img-squash or ns-enter; edf-merge and edf-expand read EDFs (TOML, or edf-merge --json)\n", "\(again)")
        // A registry image whose tag was edited alone: its parts and its reference disagree.
        try box.write("r.toml", "image = \"ubuntu:22.04\"\n")
        let registry = try box.run("edf-expand", ["r.toml"])
        let retagged = registry.stdout.replacing("\"tag\" : \"22.04\"", with: "\"tag\" : \"23.04\"")
        #expect(retagged != registry.stdout)
        let mismatch = try box.run("img-pull", ["--offline", "-q"], stdin: retagged)
        #expect(mismatch.status == 65, "\(mismatch)")
        #expect(mismatch.stderr == "img-pull: error: <stdin>: key 'image': the reference registry-1.docker.io/library/ubuntu:22.04 and its parts (registry, repository, tag, digest) disagree\n  hint: give the JSON that edf-expand writes, unchanged\n", "\(mismatch)")
    }

    /// A full disk is an error with its own status, not a crash or a silent success.
    @Test func fullDiskIsReported() throws {
        let box = try Sandbox()
        try box.write("e.toml", "image = \"ubuntu\"\n")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Tools.path("edf-merge"))
        process.arguments = ["./e.toml"]
        process.currentDirectoryURL = box.url
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: "/dev/full"))
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 74)
        #expect(stderr == "edf-merge: error: cannot write to standard output: No space left on device\n")
    }

    /// Permission errors need an unprivileged user: as root, the test drops to nobody with setpriv.
    @Test func unreadableFile() throws {
        let box = try Sandbox()
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: box.path)
        let file = try box.write("secret.toml", "image = \"x\"\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: file)
        var tool = "edf-merge"
        var arguments = ["./secret.toml"]
        if geteuid() == 0 {
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
                print("skipped: running as root and setpriv is missing, so permission errors cannot be produced")
                return
            }
            // Only if nobody can reach the binary.
            arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", Tools.path("edf-merge")] + arguments
            tool = "/usr/bin/setpriv"
        }
        let result = tool.hasPrefix("/")
            ? try Tools.run(absolute: tool, arguments, in: box.url) : try box.run(tool, arguments)
        if result.stderr.contains("Permission denied") && !result.stderr.contains("secret.toml") {
            print("skipped: the unprivileged user cannot run the built binary here: \(result.stderr)")
            return
        }
        #expect(result.stderr == "edf-merge: error: \(box.path)/secret.toml: cannot read: permission denied\n  hint: check the file's permissions (ls -l) and those of its directories\n", "\(result)")
        #expect(result.status == 66)
    }

    @Test func helpDocumentsExitStatuses() throws {
        let box = try Sandbox()
        for tool in ["edf-merge", "edf-expand"] {
            let result = try box.run(tool, ["--help"])
            #expect(result.status == 0)
            #expect(result.stdout.contains("Exit status:\n0    success\n64   usage error"))
            #expect(result.stdout.contains("66   an input file or environment was not found or cannot be read"))
        }
    }
}
