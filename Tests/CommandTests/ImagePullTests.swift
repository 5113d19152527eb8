import Foundation
import OCI
import Testing

/// img-pull against a real registry on loopback, with images the tests build and push.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ImagePullTests {
    /// A registry holding `test/app:1` (two layers) and `test/multi:1` (amd64 + arm64/v8).
    struct Fixture {
        let registry: LocalRegistry
        let box: Sandbox
        let app: ImageBuilder.Built
        let amd64: ImageBuilder.Built
        let arm64: ImageBuilder.Built
        let multiIndex: String

        var cache: String { box.path + "/cache" }

        static func make(users: [String: String] = [:], tls: Bool = false) throws -> Fixture? {
            guard let registry = try LocalRegistry.start(users: users, tls: tls) else { return nil }
            let box = try Sandbox()
            let creds = users.first.map { "\($0.key):\($0.value)" }
            let single = try ImageBuilder(root: box.url.appendingPathComponent("layout-app"))
            let app = try single.image(
                architecture: "amd64", layers: [["bin/tool": Self.incompressible(200_000)], ["etc/motd": "hello\n"]],
                env: ["PATH=/bin", "APP=1"], entrypoint: ["/bin/tool"], workdir: "/work")
            _ = try single.tag("1", manifests: [(app.digest, app.size, "amd64", nil)])
            try registry.push(layout: single.root, tag: "1", to: "test/app", credentials: creds)

            let multi = try ImageBuilder(root: box.url.appendingPathComponent("layout-multi"))
            let a = try multi.image(architecture: "amd64", layers: [["arch": "amd64"]])
            let b = try multi.image(architecture: "arm64", variant: "v8", layers: [["arch": "arm64"]])
            let index = try multi.tag("1", manifests: [(a.digest, a.size, "amd64", nil), (b.digest, b.size, "arm64", "v8")])
            try registry.push(layout: multi.root, tag: "1", to: "test/multi", credentials: creds)
            return Fixture(registry: registry, box: box, app: app.built, amd64: a.built, arm64: b.built, multiIndex: index ?? "")
        }

        /// Random hex text: gzip halves it at best, so the layer is large enough to cut mid-way.
        static func incompressible(_ count: Int) -> String {
            var text = ""
            while text.count < count { text += String(UInt64.random(in: 0...UInt64.max), radix: 16) }
            return text
        }

        func pull(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws -> ToolResult {
            try box.run("img-pull", ["--cache", cache, "--retries", "1"] + arguments, environment: environment, stdin: stdin)
        }
    }

    @Test func pullsAMultiLayerImage() throws {
        guard let f = try Fixture.make() else { return }
        let result = try f.pull(["--allow-http", "\(f.registry.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        let doc = try f.box.json(result)
        #expect(doc["reference"] as? String == "\(f.registry.host)/test/app:1")
        #expect(doc["manifestDigest"] as? String == f.app.manifest)
        // Every key, null included: consumers see the same keys every time.
        #expect(doc["indexDigest"] is NSNull, "\(doc)")
        let layers = try #require(doc["layers"] as? [[String: Any]])
        #expect(layers.map { $0["digest"] as? String } == f.app.layers)
        for layer in layers {
            let path = try #require(layer["path"] as? String)
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(Digest(of: bytes).description == layer["digest"] as? String)
            #expect(Int64(bytes.count) == (layer["size"] as? Int).map(Int64.init))
        }
        let config = try #require(doc["config"] as? [String: Any])
        #expect(config["Env"] as? [String] == ["PATH=/bin", "APP=1"])
        #expect(config["Entrypoint"] as? [String] == ["/bin/tool"])
        #expect(config["WorkingDir"] as? String == "/work")
        #expect(config["Volumes"] as? [String] == ["/data"])
        #expect(config["Labels"] as? [String: String] == ["built-by": "toolbox-tests"])
        let platform = try #require(doc["platform"] as? [String: Any])
        #expect(platform["os"] as? String == "linux" && platform["architecture"] as? String == "amd64" && platform["variant"] is NSNull, "\(platform)")
        #expect(result.stderr.contains("(2/2)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.cache + "/tmp").isEmpty)

        // Warm: nothing fetched, same document.
        let warm = try f.pull(["--allow-http", "\(f.registry.host)/test/app:1"])
        #expect(warm.status == 0)
        #expect(warm.stdout == result.stdout)
        #expect(warm.stderr == "img-pull: all 2 layers of \(f.registry.host)/test/app:1 found in the cache\n")
        // Offline, by tag, with the registry gone.
        let offline = try f.pull(["--offline", "-q", "\(f.registry.host)/test/app:1"])
        #expect(offline.status == 0)
        #expect(offline.stdout == result.stdout)
        // By digest, in the enroot form.
        let byDigest = try f.pull(["--allow-http", "-q", "\(f.registry.host)#test/app@\(f.app.manifest)"])
        #expect(try f.box.json(byDigest)["manifestDigest"] as? String == f.app.manifest)
        // Content by digest is immutable: once cached, no request is made (here, to no registry at all).
        let cachedByDigest = try f.pull(["--allow-http", "-q", "127.0.0.1:9/test/app@\(f.app.manifest)"])
        #expect(cachedByDigest.status == 0, "\(cachedByDigest)")
        // The registry gone: a tag pulled before comes from the cache, with a warning; one never
        // pulled is the network error it was.
        kill(f.registry.process.processIdentifier, SIGKILL)
        f.registry.process.waitUntilExit()
        let down = try f.pull(["--allow-http", "-q", "--retries", "1", "\(f.registry.host)/test/app:1"])
        #expect(down.status == 0 && down.stdout == result.stdout, "\(down)")
        #expect(
            down.stderr.hasPrefix("img-pull: warning: cannot reach registry \(f.registry.host): ")
                && down.stderr.hasSuffix("; using \(f.registry.host)/test/app:1 as last pulled (\(f.app.manifest)) from the cache\n"), "\(down)")
        let never = try f.pull(["--allow-http", "-q", "--retries", "1", "\(f.registry.host)/test/app:2"])
        #expect(never.status == 75 && never.stderr.hasPrefix("img-pull: error: cannot reach registry \(f.registry.host): "), "\(never)")
    }

    @Test func choosesThePlatform() throws {
        guard let f = try Fixture.make() else { return }
        let arm = try f.pull(["--allow-http", "-q", "--arch", "aarch64", "\(f.registry.host)/test/multi:1"])
        #expect(arm.status == 0, "\(arm)")
        let doc = try f.box.json(arm)
        #expect(doc["manifestDigest"] as? String == f.arm64.manifest)
        #expect(doc["indexDigest"] as? String == f.multiIndex)
        #expect(doc["platform"] as? [String: String] == ["os": "linux", "architecture": "arm64", "variant": "v8"])
        let amd = try f.pull(["--allow-http", "-q", "--arch", "amd64", "\(f.registry.host)/test/multi:1"])
        #expect(try f.box.json(amd)["manifestDigest"] as? String == f.amd64.manifest)
        let missing = try f.pull(["--allow-http", "--arch", "s390x", "\(f.registry.host)/test/multi:1"])
        #expect(missing.status == 66)
        #expect(missing.stderr == "img-pull: error: \(f.registry.host)/test/multi:1 has no image for linux/s390x; it has: linux/amd64, linux/arm64/v8\n  hint: choose one with --arch (e.g. --arch amd64)\n")
        // A variant asked for is matched exactly (arm64 without one is v8).
        let v8 = try f.pull(["--allow-http", "-q", "--arch", "arm64/v8", "\(f.registry.host)/test/multi:1"])
        #expect(try f.box.json(v8)["manifestDigest"] as? String == f.arm64.manifest)
        let v7 = try f.pull(["--allow-http", "--arch", "arm64/v7", "\(f.registry.host)/test/multi:1"])
        #expect(v7.status == 66, "\(v7)")
        #expect(v7.stderr.hasPrefix("img-pull: error: \(f.registry.host)/test/multi:1 has no image for linux/arm64/v7; it has: linux/amd64, linux/arm64/v8\n"), "\(v7)")
    }

    @Test func registryErrors() throws {
        guard let f = try Fixture.make() else { return }
        let unknown = try f.pull(["--allow-http", "\(f.registry.host)/test/app:nosuch"])
        #expect(unknown.status == 66)
        #expect(unknown.stderr == "img-pull: error: tag 'nosuch' not found in \(f.registry.host)/test/app (MANIFEST_UNKNOWN: manifest unknown)\n  hint: check the repository, tag and digest; the registry answered 404\n")
        #expect(unknown.stdout.isEmpty)
        let noRepo = try f.pull(["--allow-http", "\(f.registry.host)/test/none:1"])
        #expect(noRepo.status == 66)
        #expect(noRepo.stderr.hasPrefix("img-pull: error: tag '1' not found in \(f.registry.host)/test/none (MANIFEST_UNKNOWN: manifest unknown)\n"))
        let tls = try f.pull(["\(f.registry.host)/test/app:1"])
        #expect(tls.status == 75)
        #expect(tls.stderr.hasSuffix("  hint: the registry may speak plain HTTP: use --allow-http (or ENROOT_ALLOW_HTTP=yes) if you trust it\n"))
        let allowedByEnv = try f.pull(["-q", "\(f.registry.host)/test/app:1"], environment: ["ENROOT_ALLOW_HTTP": "yes"])
        #expect(allowedByEnv.status == 0)
        let badVariable = try f.pull(["--allow-http", "\(f.registry.host)/test/app:1"], environment: ["ENROOT_MAX_CONNECTIONS": "lots"])
        #expect(badVariable.status == 65)
        #expect(badVariable.stderr == "img-pull: error: key 'ENROOT_MAX_CONNECTIONS': \"lots\" is not a number from 1 to 256\n  hint: unset it or give a number in range\n")
        let fromVariables = try f.pull(["--allow-http", "-q", "\(f.registry.host)/test/app:1"], environment: ["ENROOT_MAX_CONNECTIONS": "2", "ENROOT_TRANSFER_RETRIES": "0"])
        #expect(fromVariables.status == 0)
        let bad = try f.pull(["--allow-http", "Bad/Name"])
        #expect(bad.status == 65)
        #expect(bad.stderr == "img-pull: error: invalid repository \"Bad/Name\" in image reference \"Bad/Name\": uppercase letters are not allowed\n  hint: repository names are lowercase letters, digits and . _ - separated by /, e.g. nvidia/pytorch\n")
        let offline = try f.pull(["--offline", "\(f.registry.host)/test/app:2"])
        #expect(offline.status == 66)
        #expect(offline.stderr == "img-pull: error: \(f.registry.host)/test/app:2 is not in the cache (\(f.cache))\n  hint: pull it once without --offline\n")
    }

    /// An index that lists a manifest for another platform than its config says (a mislabelled
    /// push): pulled, with a warning that its programs may not run.
    @Test func aMislabelledIndexEntryIsSaid() throws {
        guard let f = try Fixture.make() else { return }
        let layout = try ImageBuilder(root: f.box.url.appendingPathComponent("layout-mislabelled"))
        let amd = try layout.image(architecture: "amd64", layers: [["arch": "amd64"]])
        let other = try layout.image(architecture: "ppc64le", layers: [["arch": "ppc64le"]])
        _ = try layout.tag("1", manifests: [(amd.digest, amd.size, "arm64", nil), (other.digest, other.size, "ppc64le", nil)])
        try f.registry.push(layout: layout.root, tag: "1", to: "test/mislabelled", credentials: nil)
        let result = try f.pull(["--allow-http", "--arch", "arm64", "\(f.registry.host)/test/mislabelled:1"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr.contains("img-pull: warning: \(f.registry.host)/test/mislabelled:1: the index lists this manifest for linux/arm64, but its config says linux/amd64: its programs may not run here\n"), "\(result)")
    }

    /// --arch takes OCI names and the machines' own (i686, x86_64, aarch64, armv7l); an
    /// operating system or an empty value is refused.
    @Test func architectureNames() throws {
        let box = try Sandbox()
        for name in ["i386", "i686", "x86_64", "linux/arm64/v8", "armv7l"] {
            let accepted = try box.run("img-pull", ["--offline", "--cache", box.path + "/c", "--arch", name, "x/y:1"])
            #expect(accepted.status == 66, "\(name): \(accepted)")
        }
        for name in ["", "/", "windows/amd64", "Arm64", "arm64/v8/x"] {
            let refused = try box.run("img-pull", ["--offline", "--cache", box.path + "/c", "--arch", name, "x/y:1"])
            #expect(refused.status == 64 && refused.stderr.hasPrefix("img-pull: error: --arch \"\(name)\" is not an architecture"), "\(name): \(refused)")
        }
    }

    @Test func unreachableRegistry() throws {
        let box = try Sandbox()
        let result = try box.run("img-pull", ["--cache", box.path + "/c", "--retries", "1", "--allow-http", "127.0.0.1:9/x/y:1"])
        #expect(result.status == 75)
        // Each retry is said (a pull that seems to hang for a minute says why); then the error.
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(result)")
        #expect(lines.first?.hasPrefix("img-pull: tag '1' from 127.0.0.1:9: ") == true, "\(result)")
        #expect(lines.first?.hasSuffix("; trying again in 0.5 s (attempt 2 of 2)") == true, "\(result)")
        #expect(lines.dropFirst().first?.hasPrefix("img-pull: error: cannot reach registry 127.0.0.1:9: ") == true, "\(result)")
        let quiet = try box.run("img-pull", ["-q", "--cache", box.path + "/c", "--retries", "1", "--allow-http", "127.0.0.1:9/x/y:1"])
        #expect(quiet.status == 75 && quiet.stderr.hasPrefix("img-pull: error: cannot reach registry 127.0.0.1:9: "), "\(quiet)")
    }

    /// A registry on an IPv6 address, written in brackets as in a URL ([::1]:PORT).
    @Test func anIPv6Registry() throws {
        guard FileManager.default.fileExists(atPath: "/proc/net/if_inet6"),
            (try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8))?.contains(" lo") == true
        else {
            print("skipped: no IPv6 loopback address")
            return
        }
        let box = try Sandbox()
        // Pushed through 127.0.0.1 (skopeo takes no IPv6 address in a reference), served by a
        // second registry on [::1] from the same storage.
        guard let pushed = try LocalRegistry.start(), let registry = try LocalRegistry.start(ipv6: true, serving: pushed) else { return }
        try pushed.pushBusybox(as: "test/busybox", workingIn: box.path)
        let reference = "\(registry.host)/test/busybox:1"
        let pulled = try box.run("img-pull", ["-q", "--allow-http", "--cache", box.path + "/cache", reference])
        #expect(pulled.status == 0, "\(pulled)")
        let document = try box.json(pulled)
        #expect(document["reference"] as? String == reference && document["registry"] as? String == registry.host, "\(document)")
        // The store names it as any other registry: / as +, the brackets and port kept.
        let squashed = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": box.path], stdin: pulled.stdout)
        #expect(squashed.status == 0, "\(squashed)")
        #expect(FileManager.default.fileExists(atPath: box.path + "/[::1]:\(registry.port)+test+busybox+1.\(Self.machine).sqsh"), "\(squashed)")
    }

    static var machine: String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    @Test func basicAuthWithCredentialFiles() throws {
        guard let f = try Fixture.make(users: ["alice": "s3cret"]) else { return }
        let ref = "\(f.registry.host)/test/app:1"
        let none = try f.pull(["--allow-http", ref])
        #expect(none.status == 77)
        #expect(none.stderr == "img-pull: error: registry \(f.registry.host) requires authentication for test/app (401); no credentials file exists (\(f.box.path)/.config/enroot/.credentials, \(f.box.path)/.docker/config.json)\n  hint: add 'machine 127.0.0.1 login USER password PASSWORD' to \(f.box.path)/.config/enroot/.credentials\n")

        try f.box.write(".config/enroot/.credentials", "machine 127.0.0.1 login alice password wrong\n")
        let wrong = try f.pull(["--allow-http", ref])
        #expect(wrong.status == 77)
        #expect(wrong.stderr == "img-pull: error: registry \(f.registry.host) refused the credentials of user 'alice' from \(f.box.path)/.config/enroot/.credentials (401)\n  hint: check the login and password for machine 127.0.0.1 in \(f.box.path)/.config/enroot/.credentials\n")
        #expect(!wrong.stderr.contains("wrong"))

        try f.box.write(".config/enroot/.credentials", "machine other.example login bob password x\nmachine 127.0.0.1\n  login alice\n  password $REG_PASSWORD\n")
        let netrc = try f.pull(["--allow-http", "-q", ref], environment: ["REG_PASSWORD": "s3cret"])
        #expect(netrc.status == 0, "\(netrc)")
        #expect(!netrc.stdout.contains("s3cret") && !netrc.stderr.contains("s3cret"))
        // The variable not set: said so, not "refused the credentials".
        let unset = try f.pull(["--allow-http", "-q", ref])
        #expect(unset.status == 77, "\(unset)")
        #expect(unset.stderr == "img-pull: error: \(f.box.path)/.config/enroot/.credentials: the password for machine 127.0.0.1 is $REG_PASSWORD, and REG_PASSWORD is not set\n  hint: export REG_PASSWORD before the pull (or write the password itself in the file)\n", "\(unset)")

        // As curl reads the file (enroot hands it to curl): CRLF line ends, quoted tokens with
        // escapes, comments, a `default` entry for other hosts, macdef bodies skipped.
        for text in [
            "machine 127.0.0.1 login alice password s3cret\r\n",
            "# a comment\nmachine 127.0.0.1 login \"alice\" password \"s3\\cret\"\n",
            "machine other.example login bob password x\r\ndefault login alice password s3cret\r\n",
            "macdef init\nmachine 127.0.0.1 login mallory password no\n\nmachine 127.0.0.1 login alice password s3cret\n",
        ] {
            try f.box.write(".config/enroot/.credentials", text)
            let read = try f.pull(["--allow-http", "-q", ref])
            #expect(read.status == 0, "\(text.debugDescription): \(read)")
        }

        try FileManager.default.removeItem(atPath: f.box.path + "/.config/enroot/.credentials")
        let auth = Data("alice:s3cret".utf8).base64EncodedString()
        try f.box.write(".docker/config.json", #"{"auths": {"\#(f.registry.host)": {"auth": "\#(auth)"}}}"#)
        let docker = try f.pull(["--allow-http", "-q", "\(f.registry.host)/test/multi:1", "--arch", "arm64"])
        #expect(docker.status == 0, "\(docker)")
        // Keys with a scheme and a path name the same registry (docker login writes some so).
        try f.box.write(".docker/config.json", #"{"auths": {"http://\#(f.registry.host)/v2/": {"auth": "\#(auth)"}}}"#)
        let keyed = try f.pull(["--allow-http", "-q", ref, "--cache", f.box.path + "/cache2"])
        #expect(keyed.status == 0, "\(keyed)")
        // A config that is not JSON is said to be so (it looked like no credentials at all).
        try f.box.write(".docker/config.json", #"{"auths": {"#)
        let broken = try f.pull(["--allow-http", "-q", ref, "--cache", f.box.path + "/cache3"])
        #expect(broken.status == 65, "\(broken)")
        #expect(broken.stderr == "img-pull: error: \(f.box.path)/.docker/config.json: not a valid JSON object: its registry credentials cannot be read\n  hint: fix the file (docker login writes it), or move it away\n", "\(broken)")

        // The most exact entry wins: Docker's entry for the registry over netrc's `default`, and
        // netrc's machine with the port over the one without (whatever their order).
        try f.box.write(".docker/config.json", #"{"auths": {"\#(f.registry.host)": {"auth": "\#(auth)"}}}"#)
        try f.box.write(".config/enroot/.credentials", "default login ftpuser password nope\n")
        let exactDocker = try f.pull(["--allow-http", "-q", ref, "--cache", f.box.path + "/cache4"])
        #expect(exactDocker.status == 0, "\(exactDocker)")
        try FileManager.default.removeItem(atPath: f.box.path + "/.docker/config.json")
        try f.box.write(".config/enroot/.credentials", "machine 127.0.0.1 login alice password nope\nmachine \(f.registry.host) login alice password s3cret\n")
        let withPort = try f.pull(["--allow-http", "-q", ref, "--cache", f.box.path + "/cache5"])
        #expect(withPort.status == 0, "\(withPort)")
        // A credentials file that cannot be used (a directory in its place), and Docker's
        // credential helpers, which img-pull does not run, are said.
        try FileManager.default.removeItem(atPath: f.box.path + "/.config/enroot/.credentials")
        try FileManager.default.createDirectory(atPath: f.box.path + "/.config/enroot/.credentials", withIntermediateDirectories: true)
        try f.box.write(".docker/config.json", #"{"auths": {}, "credsStore": "desktop"}"#)
        let unusable = try f.pull(["--allow-http", "-q", ref, "--cache", f.box.path + "/cache6"])
        #expect(unusable.status == 77, "\(unusable)")
        #expect(
            unusable.stderr.hasPrefix(
                "img-pull: error: registry \(f.registry.host) requires authentication for test/app (401); none for this registry in \(f.box.path)/.docker/config.json; \(f.box.path)/.config/enroot/.credentials is not a file; \(f.box.path)/.docker/config.json names the credential store docker-credential-desktop, which img-pull does not run\n"),
            "\(unusable)")
    }

    /// The environment document flows through: its image is pulled and `pull` added.
    @Test func pipelineDocumentOnStdin() throws {
        guard let f = try Fixture.make() else { return }
        try f.box.write("env.toml", "image = \"\(f.registry.host)#test/app:1\"\n[env]\nX = \"1\"\n")
        let expanded = try f.box.run("edf-expand", ["env.toml"])
        #expect(expanded.status == 0)
        let pulled = try f.pull(["--allow-http", "-q"], stdin: expanded.stdout)
        #expect(pulled.status == 0, "\(pulled)")
        let doc = try f.box.json(pulled)
        #expect(doc["env"] as? [String: String] == ["X": "1"])
        let pull = try #require(doc["pull"] as? [String: Any])
        #expect(pull["manifestDigest"] as? String == f.app.manifest)
        #expect((doc["image"] as? [String: Any])?["reference"] as? String == "\(f.registry.host)/test/app:1")
        // A local image passes through unchanged.
        try f.box.write("img.sqsh", "x")
        try f.box.write("local.toml", "image = \"./img.sqsh\"\n")
        let local = try f.box.run("edf-expand", ["local.toml"])
        let passed = try f.pull([], stdin: local.stdout)
        #expect(passed.status == 0)
        #expect(passed.stdout == local.stdout)
        let garbage = try f.pull([], stdin: "{\"image\": 1}")
        #expect(garbage.status == 65)
        #expect(garbage.stderr.hasPrefix("img-pull: error: <stdin>: not an environment document: "))
    }

    /// Eight pulls of one image at once: all succeed with the same result, each blob stored once,
    /// nothing partial left.
    @Test func concurrentPulls() throws {
        guard let f = try Fixture.make() else { return }
        let ref = "\(f.registry.host)/test/app:1"
        let results = try (0..<8).map { _ -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.path("img-pull"))
            p.arguments = ["--cache", f.cache, "-q", "--allow-http", ref]
            p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: "/dev/null"))
            try p.run()
            return p
        }
        for p in results { p.waitUntilExit() }
        #expect(results.allSatisfy { $0.terminationStatus == 0 })
        let blobs = try FileManager.default.contentsOfDirectory(atPath: f.cache + "/blobs/sha256")
        #expect(Set(blobs) == Set((f.app.layers + [f.app.config, f.app.manifest]).map { String($0.dropFirst(7)) }))
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.cache + "/tmp").isEmpty)

        // A blob whose lock another process holds (a pull stopped with ^Z): the wait is said.
        let other = f.box.path + "/other-cache"
        let layer = String(f.app.layers[0].dropFirst(7))
        try FileManager.default.createDirectory(atPath: other + "/locks", withIntermediateDirectories: true)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = [other + "/locks/" + layer, "sleep", "1.5"]
        try holder.run()
        usleep(300_000)
        let waited = try f.box.run("img-pull", ["--cache", other, "--allow-http", ref])
        holder.waitUntilExit()
        #expect(waited.status == 0 && waited.stderr.contains("img-pull: \(f.app.layers[0]): waiting for another img-pull that is fetching it\n"), "\(waited)")
    }

    /// A cache shared by a group (root made 2775 by its owner, as the README says): what a pull
    /// with umask 077 creates is readable and writable by the group, so the next user of the
    /// group can pull into it and read what is there.
    /// And a repository one level below another's tag (test/app:1 and test/app/1:1) lives beside
    /// it: tag records are under @tags, which no repository name can hold.
    @Test func aGroupCacheAndNestedRepositories() throws {
        guard let f = try Fixture.make() else { return }
        try f.registry.push(layout: f.box.url.appendingPathComponent("layout-app"), tag: "1", to: "test/app/1")
        try FileManager.default.createDirectory(atPath: f.cache, withIntermediateDirectories: true)
        chmod(f.cache, 0o2775)
        for reference in ["test/app:1", "test/app/1:1", "test/app:1"] {
            let pull = try Tools.run(
                absolute: "/bin/sh", ["-c", "umask 077; exec \"$0\" \"$@\"", Tools.path("img-pull"), "--cache", f.cache, "-q", "--allow-http", "\(f.registry.host)/\(reference)"],
                in: f.box.url)
            #expect(pull.status == 0 && pull.stderr == "", "\(reference): \(pull)")
        }
        let tags = f.cache + "/refs/\(f.registry.host)/test/app/@tags"
        for path in [f.cache + "/blobs/sha256", f.cache + "/locks", tags, f.cache + "/refs/\(f.registry.host)/test/app/1/@tags"] {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode & 0o2070 == 0o2070, "\(path): \(String(mode, radix: 8))")
        }
        for path in [tags + "/1", f.cache + "/blobs/sha256/" + f.app.layers[0].dropFirst(7)] {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode & 0o060 == 0o060, "\(path): \(String(mode, radix: 8))")
        }
        for reference in ["test/app:1", "test/app/1:1"] {
            let offline = try f.pull(["--offline", "-q", "\(f.registry.host)/\(reference)"])
            let digest = try f.box.json(offline)["manifestDigest"] as? String
            #expect(offline.status == 0 && digest == f.app.manifest, "\(offline)")
        }
        // A tag recorded where earlier versions put it still resolves offline.
        try FileManager.default.moveItem(atPath: tags + "/1", toPath: f.cache + "/refs/\(f.registry.host)/test/app/@old")
        try FileManager.default.removeItem(atPath: tags)
        try FileManager.default.moveItem(atPath: f.cache + "/refs/\(f.registry.host)/test/app/@old", toPath: f.cache + "/refs/\(f.registry.host)/test/app/2")
        let old = try f.pull(["--offline", "-q", "\(f.registry.host)/test/app:2"])
        #expect(old.status == 0, "\(old)")
    }

    /// A truncated or corrupted cache file is detected and fetched again.
    @Test func damagedCacheIsRepaired() throws {
        guard let f = try Fixture.make() else { return }
        let ref = "\(f.registry.host)/test/app:1"
        #expect(try f.pull(["--allow-http", "-q", ref]).status == 0)
        let layer = f.cache + "/blobs/sha256/" + f.app.layers[0].dropFirst(7)
        let original = try Data(contentsOf: URL(fileURLWithPath: layer))
        // Truncated: the size no longer matches.
        try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: layer))
        let truncated = try f.pull(["--allow-http", ref])
        #expect(truncated.status == 0)
        #expect(truncated.stderr.contains("(1/1)"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: layer)) == original)
        // Same size, one byte flipped: --verify re-hashes the cache and fetches it again.
        var flipped = original
        flipped[100] ^= 0xff
        try flipped.write(to: URL(fileURLWithPath: layer))
        let verified = try f.pull(["--allow-http", "--verify", ref])
        #expect(verified.status == 0, "\(verified)")
        #expect(verified.stderr.contains("corrupt in the cache; fetching it again"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: layer)) == original)
        let sealed = try Tools.run(absolute: "/usr/bin/getfattr", ["-n", "user.toolbox.verified", layer], in: f.box.url)
        guard sealed.status == 0 else {
            print("skipped: the file system of \(f.cache) keeps no user.* attributes (\(sealed.stderr))")
            return
        }
        // Same size, a byte changed in place: detected on use, without --verify (the blob's seal,
        // its size and modification time when it was verified, no longer matches), and fetched
        // again. img-squash refuses such a layer until then.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: layer))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data([original[100] ^ 0xff]))
        try handle.close()
        let document = try f.box.write("pulled.json", verified.stdout)
        let squashed = try f.box.run("img-squash", ["-q", "-o", f.box.path + "/image.sqsh", "-"], stdin: try String(contentsOfFile: document, encoding: .utf8))
        #expect(squashed.status == 65 && squashed.stderr.contains("the layer was changed in the cache since img-pull verified it"), "\(squashed)")
        let onUse = try f.pull(["--allow-http", ref])
        #expect(onUse.status == 0, "\(onUse)")
        #expect(onUse.stderr.contains("was changed in the cache since it was verified, and is corrupt; fetching it again"), "\(onUse)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: layer)) == original)
        let again = try f.box.run("img-squash", ["-q", "-o", f.box.path + "/image.sqsh", "-"], stdin: try String(contentsOfFile: document, encoding: .utf8))
        #expect(again.status == 0, "\(again)")
    }

    /// A full disk: a clear error and exit 74, and what the cache holds is still valid. Needs a small
    /// tmpfs, mounted in a private mount namespace (root only).
    @Test func diskFull() throws {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else {
            print("skipped: a small tmpfs for the disk-full test needs root and unshare")
            return
        }
        guard let f = try Fixture.make() else { return }
        try f.box.mkdir("small")
        let small = f.box.path + "/small"
        let command = "mount -t tmpfs -o size=48k tmpfs '\(small)' && '\(Tools.path("img-pull"))' --cache '\(small)/cache' --allow-http -q \(f.registry.host)/test/app:1; echo \"status=$?\"; for b in '\(small)'/cache/blobs/sha256/*; do [ -f \"$b\" ] && echo \"blob=$(sha256sum \"$b\" | cut -c1-64) $(basename \"$b\")\"; done"
        let result = try Tools.run(absolute: "/usr/bin/unshare", ["-m", "/bin/sh", "-c", command], in: f.box.url)
        #expect(result.stdout.contains("status=74"), "\(result)")
        #expect(result.stderr.contains("disk full"), "\(result)")
        #expect(result.stderr.contains("the cache is intact"))
        // Every blob that made it under its final name is complete and matches its name.
        for line in result.stdout.split(separator: "\n") where line.hasPrefix("blob=") {
            let parts = line.dropFirst(5).split(separator: " ")
            #expect(parts.count == 2 && parts[0] == parts[1], "\(line)")
        }
        #expect(!result.stdout.contains(f.app.layers[0].dropFirst(7)))
    }

    /// HTTPS, the default: a registry with its own certificate authority needs --ca-file.
    @Test func httpsWithAPrivateCertificateAuthority() throws {
        guard let f = try Fixture.make(tls: true) else { return }
        let ref = "\(f.registry.host)/test/app:1"
        let untrusted = try f.pull([ref])
        #expect(untrusted.status == 75)
        #expect(untrusted.stderr.contains("certificate"), "\(untrusted)")
        // Not tried again: an untrusted certificate stays untrusted.
        #expect(untrusted.stderr.hasPrefix("img-pull: error: cannot reach registry \(f.registry.host): SSL certificate problem: "), "\(untrusted)")
        #expect(untrusted.stderr.hasSuffix("  hint: the registry's certificate is not trusted: give its CA certificate with --ca-file, or add it to the system's trust store\n"))
        let trusted = try f.pull(["-q", "--ca-file", f.registry.certificate, ref])
        #expect(trusted.status == 0, "\(trusted)")
        // As curl (which enroot runs) takes them: CURL_CA_BUNDLE, SSL_CERT_FILE.
        for variable in ["CURL_CA_BUNDLE", "SSL_CERT_FILE"] {
            let byVariable = try f.pull(["-q", ref, "--cache", f.box.path + "/cache-" + variable], environment: [variable: f.registry.certificate])
            #expect(byVariable.status == 0, "\(variable): \(byVariable)")
        }
        let missing = try f.pull(["-q", ref], environment: ["CURL_CA_BUNDLE": "/nonexistent.pem"])
        #expect(missing.status == 66 && missing.stderr == "img-pull: error: /nonexistent.pem: key 'CURL_CA_BUNDLE': the CA certificate file does not exist\n  hint: give CURL_CA_BUNDLE the PEM file of the registry's certificate authority\n", "\(missing)")
        #expect(try f.box.json(trusted)["manifestDigest"] as? String == f.app.manifest)
    }
}
