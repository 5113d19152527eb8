import Foundation
import OCI
import Testing

/// Tests/Fixtures/fault_proxy.py in front of a real registry: token challenges and expiry,
/// injected errors, truncation, corruption, broken manifests.
final class FaultProxy {
    let process: Process
    let port: Int
    let log: URL

    var host: String { "127.0.0.1:\(port)" }

    init(upstream: String, flags: [String], directory: URL) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/fault_proxy.py")
        log = directory.appendingPathComponent("proxy-\(UUID().uuidString).log")
        var lastPort = 0
        for _ in 0..<5 {
            let port = Int.random(in: 40001...60000)
            lastPort = port
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", script.path, "--port", String(port), "--upstream", upstream, "--log", log.path] + flags
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            if line.hasPrefix("ready") {
                process = p
                self.port = port
                return
            }
            p.terminate()
            p.waitUntilExit()
        }
        throw ShellError(description: "fault proxy did not start (last port \(lastPort))")
    }

    deinit {
        // SIGKILL: the runner's blocked signal mask is inherited by children, so SIGTERM may not land.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The logged requests.
    var requests: [[String: Any]] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func count(_ predicate: ([String: Any]) -> Bool) -> Int { requests.filter(predicate).count }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct FaultProxyTests {
    static func setUp(_ flags: [String]) throws -> (ImagePullTests.Fixture, FaultProxy)? {
        guard let f = try ImagePullTests.Fixture.make() else { return nil }
        let proxy = try FaultProxy(upstream: f.registry.host, flags: flags, directory: f.box.url)
        return (f, proxy)
    }

    static func isBlob(_ r: [String: Any]) -> Bool { (r["path"] as? String)?.contains("/blobs/") == true && r["method"] as? String == "GET" }

    @Test func bearerTokensAreRenewedWhenTheyExpire() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--token-uses", "2"]) else { return }
        let result = try f.pull(["--allow-http", "--connections", "1", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(try f.box.json(result)["manifestDigest"] as? String == f.app.manifest)
        // Manifest, config and two layers with tokens good for two requests each: renewed at least once.
        #expect(proxy.count { ($0["path"] as? String)?.hasPrefix("/token") == true } >= 2)
    }

    @Test func tokenServiceCredentials() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--token-user", "alice:pw"]) else { return }
        let ref = "\(proxy.host)/test/app:1"
        let anonymous = try f.pull(["--allow-http", ref])
        #expect(anonymous.status == 77)
        #expect(anonymous.stderr.hasPrefix("img-pull: error: registry \(proxy.host) requires authentication for test/app (401)"))
        try f.box.write(".config/enroot/.credentials", "machine 127.0.0.1 login alice password nope\n")
        let wrong = try f.pull(["--allow-http", ref])
        #expect(wrong.status == 77)
        #expect(wrong.stderr.hasPrefix("img-pull: error: registry \(proxy.host) refused the credentials of user 'alice' from \(f.box.path)/.config/enroot/.credentials (401)"))
        try f.box.write(".config/enroot/.credentials", "machine 127.0.0.1 login alice password pw\n")
        let right = try f.pull(["--allow-http", "-q", ref])
        #expect(right.status == 0, "\(right)")
    }

    /// A token service on another host gets the registry's credentials, never its own netrc
    /// entry (a token made with another host's credentials would go to whichever registry asked:
    /// only Docker Hub's auth.docker.io gets its own entry); a token address with a user part
    /// (https://auth.example@elsewhere/) is refused before anything is sent.
    @Test func tokenServicesGetOnlyTheRegistrysCredentials() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--token-user", "alice:pw", "--realm-host", "localhost"]) else { return }
        try f.box.write(".config/enroot/.credentials", "machine localhost login alice password pw\n")
        let other = try f.pull(["--allow-http", "-q", "\(proxy.host)/test/app:1"])
        #expect(other.status == 77, "\(other)")
        let tokens = proxy.requests.filter { ($0["path"] as? String)?.hasPrefix("/token") == true }
        #expect(!tokens.isEmpty && tokens.allSatisfy { ($0["authorization"] as? String) == "" }, "\(tokens)")

        guard let (g, tricky) = try Self.setUp(["--bearer", "--token-user", "alice:pw", "--realm-host", "auth.example:1@localhost"]) else { return }
        try g.box.write(".config/enroot/.credentials", "machine 127.0.0.1 login alice password pw\n")
        let userPart = try g.pull(["--allow-http", "-q", "\(tricky.host)/test/app:1"])
        #expect(userPart.status == 65, "\(userPart)")
        #expect(userPart.stderr.hasPrefix("img-pull: error: \(tricky.host) asks for a token from an address with a user part (auth.example:1@localhost:\(tricky.port)); nothing was sent there\n"), "\(userPart)")
        #expect(tricky.count { ($0["path"] as? String)?.hasPrefix("/token") == true } == 0)
    }

    @Test func serverErrorsAreRetried() throws {
        guard let (f, proxy) = try Self.setUp(["--fail-blobs", "2", "--fail-status", "503"]) else { return }
        let result = try f.pull(["--allow-http", "-q", "--retries", "3", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(proxy.count(Self.isBlob) >= 5)
    }

    @Test func persistentRateLimitingFailsClearly() throws {
        guard let (f, proxy) = try Self.setUp(["--fail-all", "--fail-status", "429"]) else { return }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 75)
        #expect(result.stderr == "img-pull: tag '1' from \(proxy.host): the registry answered 429; trying again in 0.5 s (attempt 2 of 2)\nimg-pull: error: registry \(proxy.host) is rate-limiting requests (429) for tag '1' after 1 retries\n  hint: wait and try again, or log in for a higher limit\n")
        #expect(proxy.count { _ in true } == 2)
    }

    /// A 429 with Retry-After: the retry waits as long as asked (the header's line ending once
    /// made the value unreadable, and the backoff of 0.5 s was used instead).
    @Test func retryAfterIsHonoured() throws {
        guard let (f, proxy) = try Self.setUp(["--fail-each-blob-once", "--fail-status", "429", "--retry-after", "2"]) else { return }
        let result = try f.pull(["--allow-http", "--connections", "1", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr.contains(": the registry answered 429; trying again in 2.0 s (attempt 2)\n"), "\(result)")
        let gets = proxy.requests.filter(Self.isBlob)
        let first = try #require(gets.first)
        let again = try #require(gets.dropFirst().first { $0["path"] as? String == first["path"] as? String })
        let waited = ((again["time"] as? Double) ?? 0) - ((first["time"] as? Double) ?? 0)
        #expect(waited >= 1.9, "retried after \(waited) s")
    }

    /// The realm of a Bearer challenge is fetched only over HTTPS (HTTP with --allow-http): a
    /// registry cannot make img-pull read a local file or send credentials elsewhere.
    @Test func tokenRealmsOtherThanHTTPAreRefused() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--realm", "file:///etc/passwd"]) else { return }
        try f.box.write(".config/enroot/.credentials", "machine 127.0.0.1 login alice password pw\n")
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65, "\(result)")
        #expect(result.stderr == "img-pull: error: \(proxy.host) asks for a token from file:///etc/passwd, which is not an http or https address; nothing was sent there\n  hint: the registry's WWW-Authenticate challenge is wrong; tell its operators\n")
    }

    /// A registry that offers Basic before Bearer (in one header, or in two): a token is asked
    /// for, anonymously or with the credentials (as Docker prefers Bearer), not Basic sent.
    @Test(arguments: ["one-header", "two-headers"]) func bearerIsPreferredToBasic(style: String) throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--basic-too", style]) else { return }
        let anonymous = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(anonymous.status == 0, "\(anonymous)")
        #expect(proxy.count { ($0["path"] as? String)?.hasPrefix("/token") == true } >= 1)
    }

    /// A redirect to an address img-pull does not follow (ftp://): refused at once, as the
    /// registry's fault (65), not as a network to try again later.
    @Test func aRedirectToAnotherSchemeIsRefused() throws {
        guard let (f, proxy) = try Self.setUp(["--redirect-blobs", "--redirect-scheme", "ftp"]) else { return }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65, "\(result)")
        #expect(result.stderr.contains("img-pull: error: registry \(proxy.host) sent img-pull to an address it does not follow ("), "\(result)")
        #expect(result.stderr.hasSuffix("); nothing was fetched from there\n  hint: only http and https addresses are followed; the registry's redirect is wrong: tell its operators\n"), "\(result)")
    }

    /// Blobs the registry does not have (404): a clear error, and no empty partial file left in
    /// the cache's tmp/ (a partial is kept only when it holds bytes to resume from).
    @Test func missingBlobsLeaveNoEmptyPartials() throws {
        guard let (f, proxy) = try Self.setUp(["--fail-blobs", "100", "--fail-status", "404"]) else { return }
        // The config in the cache already (pulled directly), the layers not: their GETs get 404.
        #expect(try f.pull(["--allow-http", "-q", "\(f.registry.host)/test/app:1"]).status == 0)
        for layer in f.app.layers { try FileManager.default.removeItem(atPath: f.cache + "/blobs/sha256/" + layer.dropFirst("sha256:".count)) }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 66, "\(result)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: f.cache + "/tmp")) ?? []
        #expect(!left.contains { $0.hasSuffix(".partial") }, "\(left)")
    }

    /// A token service that answers 200 with something else (a proxy's login page): said at once
    /// (65), not as a network to wait for.
    @Test func aTokenServiceWithoutATokenIsSaid() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--token-body", "<html>Please log in</html>"]) else { return }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65, "\(result)")
        #expect(result.stderr == "img-pull: error: the token service of \(proxy.host) answered 200 without a token\n  hint: its answer is not a token service's JSON ({\"token\": ...}): a proxy or a login page answered for http://127.0.0.1:\(proxy.port)/token\n", "\(result)")
    }

    /// A realm that is a path (`realm="/token"`): the token service on the registry's own address.
    @Test func aRelativeTokenRealmIsOnTheRegistry() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--realm", "/token"]) else { return }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(proxy.count { ($0["path"] as? String)?.hasPrefix("/token") == true } >= 1)
    }

    @Test func truncatedTransfersResumeWithRange() throws {
        guard let (f, proxy) = try Self.setUp(["--truncate-blobs", "2", "--truncate-min-size", "2000"]) else { return }
        let result = try f.pull(["--allow-http", "--retries", "3", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(proxy.count { Self.isBlob($0) && ($0["range"] as? String)?.hasPrefix("bytes=") == true } >= 1)
        #expect(result.stderr.contains("interrupted after"))
        let doc = try f.box.json(result)
        for layer in try #require(doc["layers"] as? [[String: Any]]) {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try #require(layer["path"] as? String))))
            #expect(Digest(of: bytes).description == layer["digest"] as? String)
        }
    }

    @Test func serverIgnoringRangeStartsOver() throws {
        guard let (f, proxy) = try Self.setUp(["--truncate-blobs", "2", "--truncate-min-size", "2000", "--ignore-range"]) else { return }
        let result = try f.pull(["--allow-http", "-q", "--retries", "3", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.cache + "/tmp").isEmpty)
    }

    @Test func corruptBlobsAreRejectedAndNotCached() throws {
        guard let (f, proxy) = try Self.setUp(["--corrupt-blobs"]) else { return }
        let result = try f.pull(["--allow-http", "--connections", "1", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65)
        #expect(result.stderr.contains("does not match its digest"))
        let cached = (try? FileManager.default.contentsOfDirectory(atPath: f.cache + "/blobs/sha256")) ?? []
        #expect(!cached.contains { f.app.layers.contains("sha256:" + $0) || "sha256:" + $0 == f.app.config })
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.cache + "/tmp").isEmpty)
    }

    /// A manifest that declares layers smaller than they are: the body is cut off at the declared
    /// size (a hostile registry cannot fill the disk), nothing is cached, the tag is not recorded.
    @Test func layersLargerThanDeclaredAreRefused() throws {
        guard let (f, proxy) = try Self.setUp(["--shrink-layer-sizes", "100"]) else { return }
        let result = try f.pull(["--allow-http", "--connections", "1", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65, "\(result)")
        #expect(result.stderr.contains("is larger than the 100 bytes its descriptor declares"), "\(result)")
        let cached = (try? FileManager.default.contentsOfDirectory(atPath: f.cache + "/blobs/sha256")) ?? []
        #expect(!cached.contains { f.app.layers.contains("sha256:" + $0) }, "\(cached)")
        let offline = try f.pull(["--offline", "\(proxy.host)/test/app:1"])
        #expect(offline.status == 66 && offline.stderr.contains("is not in the cache"), "the tag was recorded: \(offline)")
    }

    /// A pull that fails halfway records no tag: an offline pull of the tag keeps what it had.
    @Test func aFailedPullRecordsNoTag() throws {
        guard let (f, proxy) = try Self.setUp(["--fail-blobs", "100", "--fail-status", "500"]) else { return }
        let failed = try f.pull(["--allow-http", "--retries", "0", "\(proxy.host)/test/app:1"])
        #expect(failed.status == 75, "\(failed)")
        let offline = try f.pull(["--offline", "\(proxy.host)/test/app:1"])
        #expect(offline.status == 66, "\(offline)")
        #expect(offline.stderr == "img-pull: error: \(proxy.host)/test/app:1 is not in the cache (\(f.cache))\n  hint: pull it once without --offline\n", "\(offline)")
    }

    @Test func malformedManifest() throws {
        guard let (f, proxy) = try Self.setUp(["--manifest-body", "{\"schemaVersion\": 2, \"layers\": [oops"]) else { return }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65)
        #expect(result.stderr == "img-pull: error: the manifest of \(proxy.host)/test/app:1 is not valid JSON\n  hint: the registry answered with something that is not a manifest\n")
    }

    @Test func unsupportedMediaType() throws {
        guard let (f, proxy) = try Self.setUp(["--manifest-media-type", "application/vnd.docker.distribution.manifest.v1+prettyjws"]) else { return }
        let result = try f.pull(["--allow-http", "\(proxy.host)/test/app:1"])
        #expect(result.status == 65)
        #expect(result.stderr == "img-pull: error: \(proxy.host)/test/app:1 has a Docker schema 1 manifest (application/vnd.docker.distribution.manifest.v1+prettyjws), which Docker itself no longer pulls\n  hint: push the image again with a current tool (skopeo copy, docker, podman write schema 2 or OCI manifests)\n", "\(result)")
        guard let (g, other) = try Self.setUp(["--manifest-media-type", "application/vnd.example.manifest.v9+json"]) else { return }
        let unknown = try g.pull(["--allow-http", "\(other.host)/test/app:1"])
        #expect(unknown.status == 65)
        #expect(unknown.stderr.hasPrefix("img-pull: error: unsupported manifest media type \"application/vnd.example.manifest.v9+json\" for \(other.host)/test/app:1\n"), "\(unknown)")
    }

    /// Concurrent pulls through the proxy: each blob crosses the network once.
    @Test func concurrentPullsFetchEachBlobOnce() throws {
        guard let (f, proxy) = try Self.setUp(["--slow-blobs", "0.3"]) else { return }
        let processes = try (0..<6).map { _ -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.path("img-pull"))
            p.arguments = ["--cache", f.cache, "-q", "--allow-http", "\(proxy.host)/test/app:1"]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        for p in processes { p.waitUntilExit() }
        #expect(processes.allSatisfy { $0.terminationStatus == 0 })
        for layer in f.app.layers {
            #expect(proxy.count { Self.isBlob($0) && ($0["path"] as? String)?.hasSuffix(layer) == true } == 1)
        }
    }

    /// Blob storage on another host: redirects are followed, and the registry's token is not sent there.
    @Test func redirectsDropCredentialsOnAnotherHost() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--redirect-blobs"]) else { return }
        let result = try f.pull(["--allow-http", "-q", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        let stored = proxy.requests.filter { ($0["path"] as? String)?.hasPrefix("/storage/") == true }
        #expect(stored.count == 3)
        #expect(stored.allSatisfy { ($0["authorization"] as? String) == "" })
        #expect(proxy.count { Self.isBlob($0) && ($0["path"] as? String)?.hasPrefix("/v2/") == true && $0["authorization"] as? String == "Bearer" } == 3)
    }

    /// Blob storage that asks for a token of its own, or refuses (an expired redirect): the
    /// user's credentials never go to its token service, and the message does not blame them.
    @Test(arguments: [401, 403]) func blobStorageThatRefusesGetsNoCredentials(status: Int) throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--redirect-blobs", "--token-user", "alice:S3cret", "--storage-status", String(status)]) else { return }
        try f.box.write("enroot/.credentials", "machine \(proxy.host) login alice password S3cret\n")
        let result = try f.pull(["--allow-http", "-q", "\(proxy.host)/test/app:1"], environment: ["ENROOT_CONFIG_PATH": f.box.path + "/enroot"])
        #expect(result.status == 75, "\(result)")
        #expect(result.stderr.contains(": registry \(proxy.host) sent the download to localhost:\(proxy.port), which refused it (\(status))\n  hint: the registry's redirect may have expired: pull again; if it goes on, tell the registry's operators\n"), "\(result)")
        #expect(!result.stderr.contains("S3cret") && !result.stderr.contains("credentials"), "\(result)")
        // Tokens were asked for the registry's challenges only (with the credentials), never for the storage's.
        let tokens = proxy.requests.filter { ($0["path"] as? String)?.hasPrefix("/token") == true }
        #expect(!tokens.isEmpty && tokens.allSatisfy { ($0["path"] as? String)?.contains("service=storage") == false }, "\(tokens)")
    }

    /// A token that expires after every few requests, with one connection and no retries: each
    /// renewal is not a retry, and the pull succeeds.
    @Test func tokenRenewalsAreNotRetries() throws {
        guard let (f, proxy) = try Self.setUp(["--bearer", "--token-uses", "1"]) else { return }
        let result = try f.pull(["--allow-http", "-q", "--connections", "1", "--retries", "0", "\(proxy.host)/test/app:1"])
        #expect(result.status == 0, "\(result)")
        #expect(proxy.count { ($0["path"] as? String)?.hasPrefix("/token") == true } >= 4)
    }
}
