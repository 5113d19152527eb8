import Foundation
import OCI
import Testing

/// Runs a shell command and returns its stdout; throws with its stderr when it fails.
@discardableResult
func shell(_ command: String, environment: [String: String] = [:]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-c", command]
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { _, new in new }
    process.environment = env
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ShellError(description: "\(command): exit \(process.terminationStatus): \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

struct ShellError: Error, CustomStringConvertible {
    var description: String
}

/// A real registry (the CNCF distribution server, Debian's docker-registry) on loopback, started for
/// a test and stopped with it. With `users`, it requires Basic auth (htpasswd, bcrypt).
final class LocalRegistry {
    let directory: URL
    let port: Int
    let process: Process
    /// On the IPv6 loopback address ([::1]) instead of 127.0.0.1.
    let ipv6: Bool

    var host: String { ipv6 ? "[::1]:\(port)" : "127.0.0.1:\(port)" }

    /// nil (with the reason printed) when the tools it needs are missing.
    /// With `tls`, it serves HTTPS with a self-signed certificate for 127.0.0.1 (`certificate`).
    /// `serving` another registry's storage: the same images under another address.
    static func start(
        users: [String: String] = [:], tls: Bool = false, accessLog: Bool = false, ipv6: Bool = false, serving other: LocalRegistry? = nil
    ) throws -> LocalRegistry? {
        for tool in ["/usr/bin/docker-registry", "/usr/bin/skopeo"] where !FileManager.default.isExecutableFile(atPath: tool) {
            print("skipped: \(tool) is not installed (apt-get install docker-registry skopeo)")
            return nil
        }
        if !users.isEmpty && !FileManager.default.isExecutableFile(atPath: "/usr/bin/htpasswd") {
            print("skipped: htpasswd is not installed (apt-get install apache2-utils)")
            return nil
        }
        var lastError: (any Error)?
        for _ in 0..<5 {
            do {
                return try LocalRegistry(
                    port: Int.random(in: 20000...40000), users: users, tls: tls, accessLog: accessLog, ipv6: ipv6,
                    storage: other.map { $0.directory.appendingPathComponent("storage").path })
            } catch {
                lastError = error
            }
        }
        throw lastError ?? ShellError(description: "registry did not start")
    }

    var certificate: String { directory.appendingPathComponent("cert.pem").path }

    private init(port: Int, users: [String: String], tls: Bool, accessLog: Bool, ipv6: Bool, storage: String?) throws {
        self.port = port
        self.ipv6 = ipv6
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("storage"), withIntermediateDirectories: true)
        var auth = ""
        if !users.isEmpty {
            let file = directory.appendingPathComponent("htpasswd").path
            for (user, password) in users {
                try shell("htpasswd -B -b \(FileManager.default.fileExists(atPath: file) ? "" : "-c") '\(file)' '\(user)' '\(password)'")
            }
            auth = "auth: {htpasswd: {realm: test-registry, path: \(file)}}\n"
        }
        var tlsConfig = ""
        if tls {
            let key = directory.appendingPathComponent("key.pem").path
            try shell("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' -keyout '\(key)' -out '\(directory.path)/cert.pem' 2>/dev/null")
            tlsConfig = ", tls: {certificate: \(directory.path)/cert.pem, key: \(key)}"
        }
        let config = """
            version: 0.1
            log: {level: error, accesslog: {disabled: \(!accessLog)}}
            storage: {filesystem: {rootdirectory: \(storage ?? directory.path + "/storage")}, delete: {enabled: true}}
            http: {addr: "\(ipv6 ? "[::1]" : "127.0.0.1"):\(port)"\(tlsConfig)}
            \(auth)
            """
        try config.write(to: directory.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
        process.arguments = ["serve", directory.appendingPathComponent("config.yml").path]
        let log = directory.appendingPathComponent("log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        // The access log (one line per request) goes to stdout.
        process.standardOutput = accessLog ? try FileHandle(forWritingTo: directory.appendingPathComponent("access.log").creating()) : FileHandle.nullDevice
        try process.run()
        // Ready when /v2/ answers (200, or 401 with auth); bounded.
        for _ in 0..<100 {
            let url = (tls ? "https://" : "http://") + host + "/v2/"
            if let code = try? shell("curl -gsk -o /dev/null -w '%{http_code}' '\(url)'"), code == "200" || code == "401" { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        process.terminate()
        throw ShellError(description: "docker-registry did not come up on \(host)")
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Pushes an OCI layout (all its platforms) to `repository:tag`.
    /// Pushes a small busybox image as `repository:1`: /bin/busybox with a few applets,
    /// /data/image.txt ("from the image"), Env PATH=/bin and FROM_IMAGE=yes. Built with umoci
    /// in `directory`.
    func pushBusybox(as repository: String, workingIn directory: String) throws {
        try shell("""
            set -e
            cd \(directory)
            umoci init --layout layout
            umoci new --image layout:1
            umoci unpack --rootless --image layout:1 bundle >/dev/null
            mkdir -p bundle/rootfs/bin bundle/rootfs/etc bundle/rootfs/tmp bundle/rootfs/data
            cp /bin/busybox bundle/rootfs/bin/busybox
            for applet in sh cat echo readlink sleep ls test true mkdir pwd; do ln -s busybox bundle/rootfs/bin/$applet; done
            echo 'root:x:0:0:root:/root:/bin/sh' > bundle/rootfs/etc/passwd
            echo 'from the image' > bundle/rootfs/data/image.txt
            umoci repack --image layout:1 bundle >/dev/null
            umoci config --image layout:1 --config.env PATH=/bin --config.env FROM_IMAGE=yes >/dev/null
            rm -rf bundle
            """)
        try push(layout: URL(fileURLWithPath: directory).appendingPathComponent("layout"), tag: "1", to: repository)
    }

    func push(layout: URL, tag: String, to repository: String, credentials: String? = nil) throws {
        let creds = credentials.map { "--dest-creds '\($0)'" } ?? ""
        // --dest-tls-verify=false also lets skopeo push to an HTTPS registry with a self-signed certificate.
        try shell("skopeo copy --all --quiet --dest-tls-verify=false \(creds) oci:'\(layout.path)':\(tag) docker://\(host)/\(repository):\(tag)")
    }
}

/// Writes OCI image layouts from test code: real gzip tar layers, config, manifests and an index.
struct ImageBuilder {
    struct Built {
        var layers: [String]
        var config: String
        var manifest: String
    }

    let root: URL

    init(root: URL) throws {
        self.root = root
        try FileManager.default.createDirectory(at: root.appendingPathComponent("blobs/sha256"), withIntermediateDirectories: true)
        try #"{"imageLayoutVersion":"1.0.0"}"#.write(to: root.appendingPathComponent("oci-layout"), atomically: true, encoding: .utf8)
    }

    func addBlob(_ data: Data) throws -> (digest: String, size: Int) {
        let hex = Digest(of: [UInt8](data)).hex
        try data.write(to: root.appendingPathComponent("blobs/sha256/\(hex)"))
        return ("sha256:" + hex, data.count)
    }

    /// A gzip tar layer with the given files (path -> contents).
    /// Its `diffID` is the digest of the uncompressed tar (what the config's rootfs.diff_ids hold).
    func layer(_ files: [String: String]) throws -> (digest: String, size: Int, diffID: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("layer-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        for (path, text) in files {
            let file = dir.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: file, atomically: true, encoding: .utf8)
        }
        let tar = dir.appendingPathExtension("tar")
        let out = dir.appendingPathExtension("tar.gz")
        defer { try? FileManager.default.removeItem(at: tar) }
        defer { try? FileManager.default.removeItem(at: out) }
        try shell("tar -C '\(dir.path)' --sort=name --mtime=@0 --owner=0 --group=0 -cf '\(tar.path)' . && gzip -n -c '\(tar.path)' > '\(out.path)'")
        let blob = try addBlob(try Data(contentsOf: out))
        return (blob.digest, blob.size, Digest(of: [UInt8](try Data(contentsOf: tar))).description)
    }

    /// One platform's image: layers, a config with these settings, and its manifest.
    func image(architecture: String, variant: String? = nil, layers: [[String: String]], env: [String] = ["PATH=/bin"],
               entrypoint: [String]? = nil, workdir: String? = nil) throws -> (digest: String, size: Int, built: Built) {
        let layerBlobs = try layers.map { try layer($0) }
        var runtime: [String: Any] = ["Env": env, "Labels": ["built-by": "toolbox-tests"], "Volumes": ["/data": [String: String]()]]
        if let entrypoint { runtime["Entrypoint"] = entrypoint }
        if let workdir { runtime["WorkingDir"] = workdir }
        var config: [String: Any] = ["architecture": architecture, "os": "linux", "config": runtime,
                                     "rootfs": ["type": "layers", "diff_ids": layerBlobs.map(\.diffID)]]
        if let variant { config["variant"] = variant }
        let configBlob = try addBlob(try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]))
        let manifest: [String: Any] = [
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": configBlob.digest, "size": configBlob.size],
            "layers": layerBlobs.map { ["mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": $0.digest, "size": $0.size] },
        ]
        let manifestBlob = try addBlob(try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys]))
        return (manifestBlob.digest, manifestBlob.size, Built(layers: layerBlobs.map(\.digest), config: configBlob.digest, manifest: manifestBlob.digest))
    }

    /// index.json naming one tag: a single manifest, or several platforms through a nested index.
    func tag(_ tag: String, manifests: [(digest: String, size: Int, architecture: String, variant: String?)]) throws -> String? {
        var top: [String: Any]
        var indexDigest: String?
        if manifests.count == 1, let m = manifests.first {
            top = ["mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.digest, "size": m.size]
        } else {
            let index: [String: Any] = [
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests.map { m -> [String: Any] in
                    var platform: [String: Any] = ["os": "linux", "architecture": m.architecture]
                    if let v = m.variant { platform["variant"] = v }
                    return ["mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.digest, "size": m.size, "platform": platform]
                },
            ]
            let blob = try addBlob(try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys]))
            indexDigest = blob.digest
            top = ["mediaType": "application/vnd.oci.image.index.v1+json", "digest": blob.digest, "size": blob.size]
        }
        top["annotations"] = ["org.opencontainers.image.ref.name": tag]
        let layoutIndex: [String: Any] = ["schemaVersion": 2, "manifests": [top]]
        try JSONSerialization.data(withJSONObject: layoutIndex, options: [.sortedKeys]).write(to: root.appendingPathComponent("index.json"))
        return indexDigest
    }
}

extension URL {
    /// The URL, its file created (empty) first.
    func creating() -> URL {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        return self
    }
}
