import Foundation
import Testing

/// img-squash against real tools: layers built by Tests/Fixtures/squash_fixture.py, the reference
/// tree from `umoci unpack`, our image read back by `unsquashfs`, the kernel and squashfuse.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ImageSquashTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/squash_fixture.py").path

    /// Runs a program by absolute path in the sandbox.
    @discardableResult
    static func sh(_ box: Sandbox, _ program: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ToolResult {
        try Tools.run(absolute: program, arguments, environment: environment, in: box.url)
    }

    static func have(_ program: String) -> Bool { FileManager.default.isExecutableFile(atPath: program) }

    struct Layers: Decodable {
        var tar: [String]
        var gzip: [String]
        var layout: String
        var manifest: String
    }

    static func make(_ box: Sandbox, _ arguments: [String]) throws -> Layers {
        let result = try sh(box, "/usr/bin/python3", [fixture] + arguments)
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(Layers.self, from: Data(result.stdout.utf8))
    }

    /// Compares two trees with the fixture's comparison (type, mode, content, links, devices, xattrs, owners).
    static func compare(_ box: Sandbox, _ a: String, _ b: String, owners: Bool = true, securityXattrs: Bool = true) throws {
        let result = try sh(
            box, "/usr/bin/python3", [fixture, "compare", a, b] + (owners ? ["--owners"] : []) + (securityXattrs ? [] : ["--no-security-xattrs"]))
        #expect(result.status == 0, "trees differ:\n\(result.stdout)")
    }

    static func unsquash(_ box: Sandbox, _ image: String, into directory: String) throws {
        let result = try sh(box, "/usr/bin/unsquashfs", ["-no-progress", "-d", directory, image])
        #expect(result.status == 0, "\(result)")
    }

    /// The reference tree of an image layout, or nil (with the reason printed) without umoci.
    static func umociTree(_ box: Sandbox, layout: String, bundle: String) throws -> String? {
        guard have("/usr/bin/umoci") else {
            print("skipped: umoci is not installed (contrib/install-deps.sh installs it)")
            return nil
        }
        let result = try sh(box, "/usr/bin/umoci", ["unpack", "--image", layout + ":t", bundle])
        #expect(result.status == 0, "\(result)")
        return bundle + "/rootfs"
    }

    @Test func trickyLayersGiveUmocisTree() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        guard let reference = try Self.umociTree(box, layout: layers.layout, bundle: box.path + "/bundle") else { return }
        let result = try box.run("img-squash", ["--keep-owners", "-o", "ours.sqsh"] + layers.gzip)
        #expect(result.status == 0, "\(result)")
        // The same member twice in one layer: the later one is kept, with a warning.
        #expect(result.stderr.contains("img-squash: warning: \(box.path)/l/3.tar.gz: member 4 'dup' appears again in the layer; the later one is kept\n"))
        // Duplicates: data/copy-of-big, and 2993 of the 3000 files in many/ (7 different contents).
        #expect(result.stderr.contains(", 2994 duplicate files stored once"))
        // 1 MiB of random data twice, stored once (with 384 KiB of other random data).
        let imageSize = try FileManager.default.attributesOfItem(atPath: box.path + "/ours.sqsh")[.size] as? Int ?? 0
        #expect(imageSize < 1_800_000)
        try Self.unsquash(box, box.path + "/ours.sqsh", into: box.path + "/ours")
        try Self.compare(box, reference, box.path + "/ours")

        // By default every file belongs to root, as with enroot.
        let rooted = try box.run("img-squash", ["-q", "-o", "rooted.sqsh"] + layers.gzip)
        #expect(rooted.status == 0, "\(rooted)")
        let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-lln", box.path + "/rooted.sqsh"])
        #expect(listing.stdout.contains(" 0/0 "))
        #expect(!listing.stdout.contains("1000/1001"))
        #expect(try box.run("img-squash", ["-q", "--keep-owners", "-o", "k.sqsh"] + layers.gzip).status == 0)
        #expect(try Self.sh(box, "/usr/bin/unsquashfs", ["-lln", box.path + "/k.sqsh"]).stdout.contains("1000/1001"))
    }

    /// A path that a later member of the same layer, or the layer above, makes another kind of
    /// member: what was below it before goes, as when the layers are extracted in order.
    @Test func replacedPathsGiveUmocisTree() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["replaced", box.path + "/l"])
        guard let reference = try Self.umociTree(box, layout: layers.layout, bundle: box.path + "/bundle") else { return }
        let result = try box.run("img-squash", ["-o", "ours.sqsh"] + layers.gzip)
        #expect(result.status == 0, "\(result)")
        // A whiteout before the member that replaces its parent is no second member of that path.
        #expect(!result.stderr.contains("'u' appears again"), "\(result)")
        try Self.unsquash(box, box.path + "/ours.sqsh", into: box.path + "/ours")
        try Self.compare(box, reference, box.path + "/ours")

        // A lower layer's symbolic link where the layer above has members below the same path
        // (and no directory member): the directory wins, as with enroot's overlay, and a warning
        // says so (docker and umoci would follow the link).
        let make = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import io, tarfile
            with tarfile.open("s1.tar", "w") as tar:
                t = tarfile.TarInfo("etc"); t.type = tarfile.DIRTYPE; tar.addfile(t)
                t = tarfile.TarInfo("s"); t.type = tarfile.SYMTYPE; t.linkname = "etc"; tar.addfile(t)
            with tarfile.open("s2.tar", "w") as tar:
                t = tarfile.TarInfo("s/passwd"); t.size = 1; tar.addfile(t, io.BytesIO(b"x"))
            """])
        #expect(make.status == 0, "\(make)")
        let linked = try box.run("img-squash", ["-o", "s.sqsh", "s1.tar", "s2.tar"])
        #expect(linked.status == 0, "\(linked)")
        #expect(linked.stderr.contains("img-squash: warning: \(box.path)/s1.tar: member 2 's', a symbolic link, is hidden by the directory that a higher layer's members below it imply (as with enroot's overlay; docker and umoci put those members where the link points)\n"), "\(linked)")
        // A member below a file of the same layer: the file becomes a directory, said.
        let below = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import io, tarfile
            with tarfile.open("fg.tar", "w") as tar:
                for name in ("f", "f/g"):
                    t = tarfile.TarInfo(name); t.size = 1; tar.addfile(t, io.BytesIO(b"x"))
            """])
        #expect(below.status == 0, "\(below)")
        let parent = try box.run("img-squash", ["-q", "-o", "fg.sqsh", "fg.tar"])
        #expect(parent.status == 0 && parent.stderr == "img-squash: warning: \(box.path)/fg.tar: member 2 'f/g': its parent 'f', not a directory earlier in the layer, becomes one (tar and umoci would refuse the member)\n", "\(parent)")
    }

    @Test(arguments: 1...8) func randomLayersGiveUmocisTree(seed: Int) throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["random", box.path + "/l", String(seed)])
        guard let reference = try Self.umociTree(box, layout: layers.layout, bundle: box.path + "/bundle") else { return }
        let result = try box.run("img-squash", ["-q", "--keep-owners", "--block-size", "4K", "-o", "ours.sqsh"] + layers.gzip)
        #expect(result.status == 0, "\(result)")
        try Self.unsquash(box, box.path + "/ours.sqsh", into: box.path + "/ours")
        try Self.compare(box, reference, box.path + "/ours")
    }

    @Test func oldGNUSparseMembersGiveGNUTarsTree() throws {
        let box = try Sandbox()
        _ = try Self.make(box, ["tricky", box.path + "/l"])
        try box.mkdir("gnu")
        for layer in ["5b", "5c", "5d"] {
            #expect(try Self.sh(box, "/usr/bin/tar", ["-C", box.path + "/gnu", "-xf", box.path + "/l/\(layer).tar"]).status == 0)
        }
        let result = try box.run("img-squash", ["-q", "-o", "s.sqsh"] + ["5b", "5c", "5d"].map { box.path + "/l/\($0).tar" })
        #expect(result.status == 0, "\(result)")
        try Self.unsquash(box, box.path + "/s.sqsh", into: box.path + "/ours")
        try Self.compare(box, box.path + "/gnu", box.path + "/ours")
        // The holes are holes in the image too: 3 x 8 MiB of file, a few KiB stored.
        let size = try FileManager.default.attributesOfItem(atPath: box.path + "/s.sqsh")[.size] as? Int ?? 0
        #expect(size < 64 << 10)
    }

    @Test func aFileOver4GiB() throws {
        let box = try Sandbox()
        // A sparse file of 4.5 GiB (so the test stays small): data at its start, middle and end.
        let file = box.path + "/src/huge"
        try box.mkdir("src")
        let fd = open(file, O_WRONLY | O_CREAT, 0o644)
        #expect(fd >= 0)
        for (offset, text) in [(0, "start"), (3 << 30, "middle"), ((9 << 29) - 3, "end")] {
            _ = text.withCString { pwrite(fd, $0, strlen($0), off_t(offset)) }
        }
        close(fd)
        #expect(try Self.sh(box, "/usr/bin/tar", ["--sparse", "--format=posix", "-C", box.path + "/src", "-cf", box.path + "/huge.tar", "huge"]).status == 0)
        let result = try box.run("img-squash", ["-q", "-o", "h.sqsh", "huge.tar"])
        #expect(result.status == 0, "\(result)")
        let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-lls", box.path + "/h.sqsh"])
        #expect(listing.stdout.contains(" 4831838208 "), "\(listing.stdout)")
        try Self.unsquash(box, box.path + "/h.sqsh", into: box.path + "/out")
        // The data where it belongs, zeros around it (reading all 4.5 GiB would take too long).
        let handle = try FileHandle(forReadingFrom: box.url.appendingPathComponent("out/huge"))
        defer { try? handle.close() }
        for (offset, text) in [(0, "start\0"), (3 << 30, "middle\0"), ((9 << 29) - 3, "end")] {
            try handle.seek(toOffset: UInt64(offset))
            #expect(try handle.read(upToCount: text.utf8.count) == Data(text.utf8))
        }
        #expect(try handle.seekToEnd() == 4_831_838_208)
        // Stored as holes: the image is small.
        let size = try FileManager.default.attributesOfItem(atPath: box.path + "/h.sqsh")[.size] as? Int ?? 0
        #expect(size < 1 << 20)
    }

    @Test func sameBytesWhateverTheLayerCompressionAndThreads() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        var zstd: [String] = []
        for tar in layers.tar {
            #expect(try Self.sh(box, "/usr/bin/zstd", ["-q", "-f", tar, "-o", tar + ".zst"]).status == 0)
            zstd.append(tar + ".zst")
        }
        let runs: [(String, [String])] = [
            ("a", layers.gzip), ("b", layers.gzip), ("c", layers.tar), ("d", zstd), ("e", ["--threads", "1"] + layers.gzip),
            ("f", ["--threads", "7"] + layers.gzip),
        ]
        var images: [Data] = []
        for (name, arguments) in runs {
            let result = try box.run("img-squash", ["-q", "-o", name + ".sqsh"] + arguments)
            #expect(result.status == 0, "\(result)")
            images.append(try Data(contentsOf: box.url.appendingPathComponent(name + ".sqsh")))
        }
        #expect(Set(images).count == 1, "the images differ")
        // The digest in the output is the file's SHA-256.
        let result = try box.run("img-squash", ["-q", "-o", "g.sqsh"] + layers.gzip)
        let digest = try box.json(result)["digest"] as? String
        let sum = try Self.sh(box, "/usr/bin/sha256sum", [box.path + "/g.sqsh"]).stdout.prefix(64)
        #expect(digest == "sha256:" + sum)
    }

    /// Thousands of fragment blocks (4 KiB blocks), compressed by the workers and written between
    /// files when due: the same bytes with one thread or many, and the layers' tree.
    @Test func manyFragmentBlocksSameBytesWhateverTheThreads() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["small", box.path + "/l", "7"])
        var images: [Data] = []
        for threads in ["1", "2", "7"] {
            let result = try box.run("img-squash", ["-q", "--block-size", "4K", "--threads", threads, "-o", threads + ".sqsh"] + layers.gzip)
            #expect(result.status == 0, "\(result)")
            images.append(try Data(contentsOf: box.url.appendingPathComponent(threads + ".sqsh")))
        }
        #expect(Set(images).count == 1, "the images differ")
        let fragments = try Self.sh(box, "/usr/bin/unsquashfs", ["-s", box.path + "/2.sqsh"]).stdout
        let count = fragments.split(separator: "\n").first { $0.hasPrefix("Number of fragments ") }.flatMap { Int($0.split(separator: " ").last ?? "") }
        #expect((count ?? 0) > 500, "\(fragments)")
        // The tree: the two layers (no whiteouts in them) extracted by GNU tar, one after the other.
        try box.mkdir("reference")
        for tar in layers.tar {
            #expect(try Self.sh(box, "/usr/bin/tar", ["-xf", tar, "-C", box.path + "/reference"]).status == 0)
        }
        try Self.unsquash(box, box.path + "/2.sqsh", into: box.path + "/ours")
        try Self.compare(box, box.path + "/reference", box.path + "/ours", owners: false)
    }

    @Test func sourceDateEpochSetsEveryTimestamp() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        let result = try box.run("img-squash", ["-q", "-o", "t.sqsh"] + layers.gzip, environment: ["SOURCE_DATE_EPOCH": "1234567890"])
        #expect(result.status == 0, "\(result)")
        let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-lls", box.path + "/t.sqsh"])
        let lines = listing.stdout.split(separator: "\n").filter { $0.contains("squashfs-root") }
        #expect(lines.count > 40)
        let stamp = "2009-02-13 23:31"
        for line in lines { #expect(line.contains(stamp), "\(line)") }
        let superblock = try Self.sh(box, "/usr/bin/unsquashfs", ["-s", box.path + "/t.sqsh"])
        #expect(superblock.stdout.contains("Fri Feb 13 23:31:30 2009"), "\(superblock.stdout)")
        let bad = try box.run("img-squash", ["-q", "-o", "u.sqsh"] + layers.gzip, environment: ["SOURCE_DATE_EPOCH": "yesterday"])
        #expect(bad.status == 65)
        #expect(bad.stderr == "img-squash: error: key 'SOURCE_DATE_EPOCH': \"yesterday\" is not a number of seconds\n  hint: unset it or give seconds since 1970\n")
    }

    @Test func compressorsAndBlockSizes() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        #expect(try box.run("img-squash", ["-q", "-o", "ref.sqsh"] + layers.gzip).status == 0)
        try Self.unsquash(box, box.path + "/ref.sqsh", into: box.path + "/ref")
        let cases: [([String], String)] = [
            (["--compression", "gzip", "--level", "9"], "Compression gzip"),
            (["--compression", "none"], "Data is uncompressed"),
            (["--compression", "zstd", "--level", "19", "--block-size", "1M"], "Block size 1048576"),
            (["--block-size", "4K"], "Block size 4096"),
        ]
        for (index, (options, expected)) in cases.enumerated() {
            let image = box.path + "/c\(index).sqsh"
            let result = try box.run("img-squash", ["-q", "-o", image] + options + layers.gzip)
            #expect(result.status == 0, "\(result)")
            let info = try Self.sh(box, "/usr/bin/unsquashfs", ["-s", image])
            #expect(info.stdout.contains(expected), "\(options): \(info.stdout)")
            try Self.unsquash(box, image, into: box.path + "/c\(index)")
            try Self.compare(box, box.path + "/ref", box.path + "/c\(index)")
        }
        let usage = try box.run("img-squash", ["-o", "x.sqsh", "--block-size", "3K"] + layers.gzip)
        #expect(usage.status == 64)
        #expect(usage.stderr.hasPrefix("img-squash: error: --block-size must be a power of two from 4K to 1M"))
        let level = try box.run("img-squash", ["-o", "x.sqsh", "--compression", "gzip", "--level", "12"] + layers.gzip)
        #expect(level.status == 64)
        #expect(level.stderr.hasPrefix("img-squash: error: --level for gzip must be in 1...9"))
    }

    @Test func theKernelAndSquashfuseReadEveryFile() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        #expect(try box.run("img-squash", ["-q", "--keep-owners", "-o", "m.sqsh"] + layers.gzip).status == 0)
        try Self.unsquash(box, box.path + "/m.sqsh", into: box.path + "/tree")
        try box.mkdir("kernel")
        if getuid() != 0 {
            print("skipped: mounting with the kernel's squashfs needs root")
        } else {
            let mount = try Self.sh(box, "/usr/bin/mount", ["-t", "squashfs", "-o", "loop,ro", box.path + "/m.sqsh", box.path + "/kernel"])
            if mount.status != 0 {
                print("skipped: the kernel cannot mount squashfs here: \(mount.stderr)")
            } else {
                defer { _ = try? Self.sh(box, "/usr/bin/umount", [box.path + "/kernel"]) }
                try Self.compare(box, box.path + "/tree", box.path + "/kernel")
            }
        }
        try box.mkdir("fuse")
        guard FileManager.default.fileExists(atPath: "/dev/fuse"), Self.have("/usr/bin/squashfuse_ll") else {
            print("skipped: no /dev/fuse or squashfuse_ll")
            return
        }
        let unmount: (String, [String])
        if getuid() == 0 {
            unmount = ("/usr/bin/umount", [box.path + "/fuse"])
        } else if Self.have("/usr/bin/fusermount3") {
            unmount = ("/usr/bin/fusermount3", ["-u", box.path + "/fuse"])
        } else {
            print("skipped: no fusermount3 to unmount a squashfuse mount without root")
            return
        }
        // squashfuse_ll (what the runtime mounts with) leaves a daemon behind, which holds
        // Foundation.Process's exit pipe: system() it.
        let status = system("/usr/bin/squashfuse_ll '\(box.path)/m.sqsh' '\(box.path)/fuse' </dev/null >/dev/null 2>&1")
        guard status == 0 else {
            print("skipped: squashfuse_ll cannot mount here (status \(status))")
            return
        }
        defer { _ = try? Self.sh(box, unmount.0, unmount.1) }
        // squashfuse 0.1.105 swaps the names of the trusted. and security. xattrs (it does so with
        // mksquashfs's images too): only user. xattrs are compared here.
        try Self.compare(box, box.path + "/tree", box.path + "/fuse", securityXattrs: false)
    }

    // MARK: The image store and the pipeline

    /// img-pull's JSON for the fixture's layers, as if pulled from nvcr.io.
    static func pullDocument(_ layers: Layers, manifest: String? = nil) throws -> String {
        var entries: [[String: Any]] = []
        for path in layers.gzip {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            entries.append([
                "digest": "sha256:" + String(repeating: "0", count: 64), "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "size": bytes.count, "path": path,
            ])
        }
        let document: [String: Any] = [
            "reference": "nvcr.io/nvidia/pytorch:24.01-py3", "registry": "nvcr.io", "repository": "nvidia/pytorch",
            "tag": "24.01-py3", "manifestDigest": manifest ?? layers.manifest, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "platform": ["os": "linux", "architecture": "amd64"], "cache": "/nonexistent",
            "config": ["digest": "sha256:" + String(repeating: "1", count: 64), "path": "/nonexistent", "Env": ["PATH=/usr/bin"],
                       "Volumes": [], "Labels": ["a": "b"], "Entrypoint": ["/bin/sh"]],
            "layers": entries,
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: document), as: UTF8.self)
    }

    /// An image store shared by a group (mode 2775): the image and its metadata are readable and
    /// writable by the group whatever the umask of who built them (077 shut the others out).
    @Test func aGroupImageStoreIsTheGroups() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        try box.mkdir("shared")
        chmod(box.path + "/shared", 0o2775)
        let built = try Tools.run(
            absolute: "/bin/sh", ["-c", "umask 077; exec \"$0\" -q", Tools.path("img-squash")],
            environment: ["EDF_IMAGESTORE": box.path + "/shared"], in: box.url, stdin: try Self.pullDocument(layers))
        #expect(built.status == 0, "\(built)")
        let files = try FileManager.default.contentsOfDirectory(atPath: box.path + "/shared")
        #expect(files.count == 2, "\(files)")
        for file in files {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: box.path + "/shared/" + file)[.posixPermissions] as? Int)
            #expect(mode & 0o060 == 0o060, "\(file): \(String(mode, radix: 8))")
        }
    }

    @Test func imageStoreNamesReusesAndRebuilds() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        try box.mkdir("store")
        let env = ["EDF_IMAGESTORE": box.path + "/store"]
        let pull = try Self.pullDocument(layers)
        let first = try box.run("img-squash", [], environment: env, stdin: pull)
        #expect(first.status == 0, "\(first)")
        let image = box.path + "/store/nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh"
        let out = try box.json(first)
        #expect(out["manifestDigest"] as? String == layers.manifest)  // img-pull's fields pass through
        let squash = try #require(out["squash"] as? [String: Any])
        #expect(squash["path"] as? String == image)
        #expect(squash["reused"] as? Bool == false)
        #expect(squash["metadata"] as? String == image + ".json")
        #expect((squash["config"] as? [String: Any])?["Entrypoint"] as? [String] == ["/bin/sh"])
        #expect(FileManager.default.fileExists(atPath: image + ".json"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/store").sorted() == [
            "nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh", "nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh.json",
        ])

        // What a killed run left is removed by the next run also when that one reuses the image.
        let left = box.path + "/store/.nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh.tmp.4194303"
        try box.write("store/.nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh.tmp.4194303", "partial")
        let second = try box.run("img-squash", [], environment: env, stdin: pull)
        #expect(second.status == 0, "\(second)")
        #expect((try box.json(second)["squash"] as? [String: Any])?["reused"] as? Bool == true)
        #expect(second.stderr == "img-squash: removed \(left), left by an interrupted run\nimg-squash: using \(image) (built before for \(layers.manifest))\n")
        #expect(!FileManager.default.fileExists(atPath: left))

        // A store the user may only read (a site's, filled by others): the image there is used
        // as it is, without a lock file (it failed: "cannot create the lock file").
        if let entry = getpwnam("tbxtest") {
            let reader = try Tools.run(
                absolute: "/usr/bin/setpriv",
                ["--reuid=\(entry.pointee.pw_uid)", "--regid=\(entry.pointee.pw_gid)", "--clear-groups", Tools.path("img-squash")],
                environment: env, in: box.url, stdin: pull)
            #expect(reader.status == 0, "\(reader)")
            #expect((try box.json(reader)["squash"] as? [String: Any])?["reused"] as? Bool == true, "\(reader)")
            #expect(!FileManager.default.fileExists(atPath: image + ".lock"))
            // One that does not fit (other options): said at once, not a lock file that fails.
            let other = try Tools.run(
                absolute: "/usr/bin/setpriv",
                ["--reuid=\(entry.pointee.pw_uid)", "--regid=\(entry.pointee.pw_gid)", "--clear-groups", Tools.path("img-squash"), "-q", "--level", "9"],
                environment: env, in: box.url, stdin: pull)
            #expect(other.status == 74, "\(other)")
            #expect(
                other.stderr == "img-squash: error: \(box.path)/store: the image store cannot be written by this user (Permission denied), and it holds no image that fits\n"
                    + "  hint: use an image store you can write (EDF_IMAGESTORE, -o), or ask its owners to build the image there\n", "\(other)")
        } else {
            print("skipped: a read-only image store (no user tbxtest: contrib/test.sh creates it)")
        }

        // The same manifest digest with other layers (a document edited by hand): built again,
        // not the image of the other layers. A digest that is not one is refused.
        var edited = try #require(try JSONSerialization.jsonObject(with: Data(pull.utf8)) as? [String: Any])
        edited["layers"] = (edited["layers"] as? [Any]).map { Array($0.dropLast()) }
        let fewer = try box.run(
            "img-squash", ["-q"], environment: env, stdin: String(decoding: try JSONSerialization.data(withJSONObject: edited), as: UTF8.self))
        #expect((try box.json(fewer)["squash"] as? [String: Any])?["reused"] as? Bool == false, "\(fewer)")
        edited["manifestDigest"] = "sha256:zz"
        let badDigest = try box.run(
            "img-squash", ["-q"], environment: env, stdin: String(decoding: try JSONSerialization.data(withJSONObject: edited), as: UTF8.self))
        #expect(badDigest.status == 65 && badDigest.stderr.hasPrefix("img-squash: error: <stdin>: key 'pull.manifestDigest': \"sha256:zz\" is not a sha256 digest\n"), "\(badDigest)")
        _ = try box.run("img-squash", ["-q"], environment: env, stdin: pull)

        // The tag moved to another manifest: built again.
        let moved = try box.run("img-squash", ["-q"], environment: env, stdin: try Self.pullDocument(layers, manifest: "sha256:" + String(repeating: "2", count: 64)))
        #expect((try box.json(moved)["squash"] as? [String: Any])?["reused"] as? Bool == false)

        let back = try box.run("img-squash", [], environment: env, stdin: pull)
        #expect(back.stderr.hasPrefix("img-squash: rebuilding \(image): it was built for sha256:2222222222222222222222222222222222222222222222222222222222222222, not \(layers.manifest)\n"), "\(back)")
        // Other options: built again, and said why; the same options again: reused.
        let gzip = try box.run("img-squash", ["--compression", "gzip", "--keep-owners"], environment: env, stdin: pull)
        #expect((try box.json(gzip)["squash"] as? [String: Any])?["reused"] as? Bool == false, "\(gzip)")
        #expect(gzip.stderr.hasPrefix("img-squash: rebuilding \(image): it was built with zstd level 3, 128 KiB blocks, every file owned by root; this run asks for gzip level 6, 128 KiB blocks, the layers' owners\n"), "\(gzip)")
        let gzipAgain = try box.run("img-squash", ["--compression", "gzip", "--keep-owners"], environment: env, stdin: pull)
        #expect((try box.json(gzipAgain)["squash"] as? [String: Any])?["reused"] as? Bool == true, "\(gzipAgain)")
        var dated = env
        dated["SOURCE_DATE_EPOCH"] = "1700000000"
        let epoch = try box.run("img-squash", ["--compression", "gzip", "--keep-owners"], environment: dated, stdin: pull)
        #expect(epoch.stderr.hasPrefix("img-squash: rebuilding \(image): it was built with gzip level 6, 128 KiB blocks, the layers' owners; this run asks for gzip level 6, 128 KiB blocks, the layers' owners, SOURCE_DATE_EPOCH=1700000000\n"), "\(epoch)")
        let defaults = try box.run("img-squash", ["-q", "--block-size", "64K"], environment: env, stdin: pull)
        #expect((try box.json(defaults)["squash"] as? [String: Any])?["blockSize"] as? Int == 65536, "\(defaults)")
        #expect(try box.run("img-squash", [], environment: env, stdin: pull).stderr.contains("rebuilding"))

        // An image put there by another tool (no metadata) is used, as the reference system does,
        // with what its superblock says.
        try FileManager.default.removeItem(atPath: image + ".json")
        let foreign = try box.run("img-squash", [], environment: env, stdin: pull)
        let foreignSquash = try #require(try box.json(foreign)["squash"] as? [String: Any])
        #expect(foreignSquash["reused"] as? Bool == true)
        #expect(foreignSquash["compression"] as? String == "zstd" && foreignSquash["blockSize"] as? Int == 131072, "\(foreignSquash)")
        #expect(foreign.stderr == "img-squash: using \(image), put there by another tool (no \(image).json); delete it to rebuild\n")
        // ... and not recorded as built for this manifest (it was not).
        #expect(!FileManager.default.fileExists(atPath: image + ".json"))
        // A file there that is no image, or only part of one, is replaced.
        let whole = try Data(contentsOf: URL(fileURLWithPath: image))
        for (bytes, problem) in [
            (Data("not an image\n".utf8), "\(image) is not a squashfs image"),
            (whole.prefix(whole.count / 2), "\(image) is truncated: the file has \(whole.count / 2) bytes of the "),
        ] {
            try bytes.write(to: URL(fileURLWithPath: image))
            let replaced = try box.run("img-squash", [], environment: env, stdin: pull)
            #expect((try box.json(replaced)["squash"] as? [String: Any])?["reused"] as? Bool == false, "\(replaced)")
            #expect(replaced.stderr.hasPrefix("img-squash: \(problem)"), "\(replaced)")
            #expect(replaced.stderr.contains("; replacing it (no \(image).json: not made by img-squash)\n"), "\(replaced)")
            try FileManager.default.removeItem(atPath: image + ".json")
        }

        // In an environment document: passed through with "squash" added.
        let document = "{\"schemaVersion\":1,\"image\":{\"registry\":\"nvcr.io\",\"repository\":\"nvidia/pytorch\",\"tag\":\"24.01-py3\",\"reference\":\"nvcr.io/nvidia/pytorch:24.01-py3\"},\"entrypoint\":true,\"writable\":true,\"mounts\":[],\"env\":{},\"annotations\":{},\"pull\":\(pull)}"
        let viaDocument = try box.run("img-squash", ["-q"], environment: env, stdin: document)
        #expect(viaDocument.status == 0, "\(viaDocument)")
        // The pull inside a document is checked with the rest of the document.
        let badPull = document.replacingOccurrences(of: layers.manifest, with: "sha256:zz")
        let badDocument = try box.run("img-squash", ["-q"], environment: env, stdin: badPull)
        #expect(badDocument.status == 65, "\(badDocument)")
        #expect(badDocument.stderr == "img-squash: error: <stdin>: key 'pull.manifestDigest': \"sha256:zz\" is not a sha256 digest\n  hint: give the JSON that img-pull (or img-build) writes, unchanged\n", "\(badDocument)")
        let parsed = try box.json(viaDocument)
        #expect(parsed["schemaVersion"] as? Int == 1)
        #expect((parsed["squash"] as? [String: Any])?["path"] as? String == image)

        // A document whose image was not pulled yet.
        let unpulled = try box.run("img-squash", [], environment: env, stdin: "{\"schemaVersion\":1,\"image\":{\"registry\":\"nvcr.io\",\"repository\":\"nvidia/pytorch\",\"tag\":\"1\",\"reference\":\"nvcr.io/nvidia/pytorch:1\"},\"entrypoint\":true,\"writable\":true,\"mounts\":[],\"env\":{},\"annotations\":{}}")
        #expect(unpulled.status == 65)
        #expect(unpulled.stderr == "img-squash: error: <stdin>: the environment's image has not been pulled\n  hint: pipe the document through img-pull first: edf-expand X | img-pull | img-squash\n")
    }

    @Test func pipedFromImgPull() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        let pulled = try box.run("img-pull", ["-q", "--cache", box.path + "/cache", box.path + "/l/layout", "--tag", "t"])
        #expect(pulled.status == 0, "\(pulled)")
        try box.mkdir("store")
        let squashed = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": box.path + "/store"], stdin: pulled.stdout)
        #expect(squashed.status == 0, "\(squashed)")
        let image = try #require((try box.json(squashed)["squash"] as? [String: Any])?["path"] as? String)
        let relative = box.path.dropFirst().split(separator: "/").joined(separator: "+")
        #expect(image == box.path + "/store/local+\(relative)+l+layout+t.x86_64.sqsh")
        // The same bytes as from the layer files themselves.
        #expect(try box.run("img-squash", ["-q", "-o", "direct.sqsh"] + layers.gzip).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: image)) == Data(contentsOf: box.url.appendingPathComponent("direct.sqsh")))
    }

    @Test func imageStoreLocations() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        let pull = try Self.pullDocument(layers)
        try box.mkdir("scratch")
        let scratch = try box.run("img-squash", ["-q"], environment: ["SCRATCH": box.path + "/scratch"], stdin: pull)
        #expect(scratch.status == 0, "\(scratch)")
        #expect((try box.json(scratch)["squash"] as? [String: Any])?["path"] as? String
            == box.path + "/scratch/.edf_imagestore/nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh")

        let void = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": "void", "TMPDIR": box.path, "SLURM_JOB_ID": "42"], stdin: pull)
        #expect(void.status == 0, "\(void)")
        let squash = try #require(try box.json(void)["squash"] as? [String: Any])
        #expect(squash["temporary"] as? Bool == true)
        // A directory per run: two steps of a job never share (and remove) one file.
        let path = try #require(squash["path"] as? String)
        #expect(path.hasPrefix(box.path + "/toolbox-images-\(getuid())/job-42/run-") && path.hasSuffix("/nvcr.io+nvidia+pytorch+24.01-py3.x86_64.sqsh"), "\(path)")
        let again = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": "void", "TMPDIR": box.path, "SLURM_JOB_ID": "42"], stdin: pull)
        let second = try #require((try box.json(again)["squash"] as? [String: Any])?["path"] as? String)
        #expect(second != path && second.hasPrefix(box.path + "/toolbox-images-\(getuid())/job-42/run-"), "\(second)")
        // $SCRATCH first: the nodes of a multi-node step see it.
        let onScratch = try box.run(
            "img-squash", ["-q"], environment: ["EDF_IMAGESTORE": "void", "TMPDIR": box.path, "SCRATCH": box.path + "/scratch", "SLURM_JOB_ID": "42"], stdin: pull)
        #expect(((try box.json(onScratch)["squash"] as? [String: Any])?["path"] as? String)?.hasPrefix(box.path + "/scratch/toolbox-images-\(getuid())/job-42/run-") == true, "\(onScratch)")
        // Private to the user; one that another user made in a shared TMPDIR is refused.
        var info = stat()
        #expect(stat(box.path + "/toolbox-images-\(getuid())", &info) == 0 && info.st_mode & 0o077 == 0)
        try box.mkdir("shared/toolbox-images-\(getuid())")
        chown(box.path + "/shared/toolbox-images-\(getuid())", 65534, 65534)
        let foreign = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": "void", "TMPDIR": box.path + "/shared", "SLURM_JOB_ID": "43"], stdin: pull)
        #expect(foreign.status == 74, "\(foreign)")
        #expect(foreign.stderr.hasPrefix("img-squash: error: \(box.path)/shared/toolbox-images-\(getuid()): is not a directory of this user's own"), "\(foreign)")

        let relative = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": "store"], stdin: pull)
        #expect(relative.status == 65)
        #expect(relative.stderr == "img-squash: error: key 'EDF_IMAGESTORE': \"store\" is not an absolute path\n  hint: give an existing absolute directory, or void for no image store\n")
        let missing = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": box.path + "/nope"], stdin: pull)
        #expect(missing.status == 66)
        #expect(missing.stderr == "img-squash: error: key 'EDF_IMAGESTORE': \"\(box.path)/nope\" is not an existing directory\n  hint: create it, or set EDF_IMAGESTORE=void for no image store\n")
    }

    @Test func concurrentRunsBuildOnce() throws {
        let box = try Sandbox()
        let layers = try Self.make(box, ["tricky", box.path + "/l"])
        try box.mkdir("store")
        try box.write("pull.json", try Self.pullDocument(layers))
        // Four processes at once (Process objects: a shell's `wait` would hang on the test runner's
        // blocked SIGCHLD, which children inherit).
        var processes: [Process] = []
        for index in 1...4 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Tools.path("img-squash"))
            process.environment = ["PATH": "/usr/bin:/bin", "HOME": box.path, "EDF_IMAGESTORE": box.path + "/store"]
            process.currentDirectoryURL = box.url
            process.standardInput = try FileHandle(forReadingFrom: box.url.appendingPathComponent("pull.json"))
            _ = FileManager.default.createFile(atPath: box.path + "/out\(index).json", contents: nil)
            _ = FileManager.default.createFile(atPath: box.path + "/err\(index).txt", contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: box.url.appendingPathComponent("out\(index).json"))
            process.standardError = try FileHandle(forWritingTo: box.url.appendingPathComponent("err\(index).txt"))
            processes.append(process)
        }
        for process in processes { try process.run() }
        for process in processes {
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        var built = 0
        for index in 1...4 {
            let err = try String(contentsOfFile: box.path + "/err\(index).txt", encoding: .utf8)
            if err.contains(": wrote ") { built += 1 }
            let out = try String(contentsOfFile: box.path + "/out\(index).json", encoding: .utf8)
            #expect(out.contains("\"squash\""), "run \(index): \(err)")
        }
        #expect(built == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/store").count == 2)
    }

    // MARK: Bad input

    @Test func badLayersAreRefusedCleanly() throws {
        let box = try Sandbox()
        _ = try Self.run(box, "bad")
        let l = box.path + "/l"
        let cases: [(String, Int32, String)] = [
            ("dotdot.tar", 65, "img-squash: error: \(l)/dotdot.tar: member 2 'a/../../evil': the path contains '..'\n  hint: a layer must not name paths outside the image's root\n"),
            ("absolute.tar", 65, "img-squash: error: \(l)/absolute.tar: member 1 '/etc/passwd': absolute path\n  hint: layer members are relative to the image's root; this layer was not made by an image builder\n"),
            ("hardlink-missing.tar", 65, "img-squash: error: \(l)/hardlink-missing.tar: member 2 'b': a hard link to 'nowhere', which is not an earlier member of this layer\n  hint: a hard link must follow its target in the same layer\n"),
            ("hardlink-later.tar", 65, "img-squash: error: \(l)/hardlink-later.tar: member 1 'b': a hard link to 'a', which is not an earlier member of this layer\n  hint: a hard link must follow its target in the same layer\n"),
            ("longname.tar", 65, "img-squash: error: \(l)/longname.tar: member 1 'dir/\(String(repeating: "x", count: 300))': a name of 300 bytes is longer than 255 bytes\n  hint: squashfs and Linux allow names of up to 255 bytes\n"),
            ("truncated.tar", 65, "img-squash: error: \(l)/truncated.tar: the tar stream ends in the middle of a member (at byte 100000)\n  hint: the layer is truncated; pull it again\n"),
            ("truncated.tar.gz", 65, "img-squash: error: \(l)/truncated.tar.gz: the gzip stream is truncated\n  hint: the layer file is incomplete: pull it again (img-pull --verify)\n"),
            ("corrupt.tar.gz", 65, "img-squash: error: \(l)/corrupt.tar.gz: corrupt gzip data: CRC-32 mismatch\n  hint: the layer file is damaged: pull it again (img-pull --verify)\n"),
            ("corrupt.tar.zst", 65, "img-squash: error: \(l)/corrupt.tar.zst: corrupt zstd data: Restored data doesn't match checksum\n  hint: the layer file is damaged: pull it again (img-pull --verify)\n"),
            ("garbage.tar", 65, "img-squash: error: \(l)/garbage.tar: not a tar header (unreadable checksum) (at byte 0 of the tar stream)\n  hint: the layer is not a valid tar archive; pull it again or rebuild it\n"),
            ("empty.tar", 65, "img-squash: error: \(l)/empty.tar: the layer holds no tar data (an empty stream)\n  hint: a layer without files is still a tar archive (1024 zero bytes); rebuild or pull it again\n"),
            ("nul.tar", 65, "img-squash: error: \(l)/nul.tar: member 1 'a\\x00b': the name contains a NUL byte\n  hint: Linux file names cannot contain NUL; the layer is damaged\n"),
            ("longlink.tar", 65, "img-squash: error: \(l)/longlink.tar: member 1 'l': a symbolic link target of 5000 bytes is longer than 4095 bytes\n  hint: Linux and squashfs take link targets of up to 4095 bytes, without NUL\n"),
            ("bigdevice.tar", 65, "img-squash: error: \(l)/bigdevice.tar: member 1 'dev': the device number 5000:1 does not fit squashfs\n  hint: squashfs keeps majors up to 4095 and minors up to 1048575, as Linux does\n"),
            ("biguid.tar", 65, "img-squash: error: \(l)/biguid.tar: the uid 1099511627776 does not fit in 32 bits (at byte 1536 of the tar stream)\n  hint: the layer is not a valid tar archive; pull it again or rebuild it\n"),
            ("bigsize.tar", 65, "img-squash: error: \(l)/bigsize.tar: a member of 9223372036854775807 bytes (the size is out of range) (at byte 1536 of the tar stream)\n  hint: the layer is not a valid tar archive; pull it again or rebuild it\n"),
            ("sparse-overflow.tar", 65, "img-squash: error: \(l)/sparse-overflow.tar: member s: a sparse file of 9223372036854775807 bytes (the size is out of range) (at byte 1536 of the tar stream)\n  hint: the layer is not a valid tar archive; pull it again or rebuild it\n"),
            ("sparse-huge.tar", 65, "img-squash: error: \(l)/sparse-huge.tar: member 1 's': a file of 17592186044416 bytes is larger than the 512 GiB that img-squash stores with this block size\n  hint: the sparse file's size is implausible: rebuild the layer\n"),
            ("trailer.tar.gz", 65, "img-squash: error: \(l)/trailer.tar.gz: the gzip stream is truncated\n  hint: the layer file is incomplete: pull it again (img-pull --verify)\n"),
            ("cut.tar.zst", 65, "img-squash: error: \(l)/cut.tar.zst: the zstd stream is truncated\n  hint: the layer file is incomplete: pull it again (img-pull --verify)\n"),
            ("dotfile.tar", 65, "img-squash: error: \(l)/dotfile.tar: member 3 'd/.': a name ending in '/.' names a directory, but this member is not one\n"),
            ("missing.tar", 66, "img-squash: error: \(l)/missing.tar: cannot open the layer: No such file or directory\n  hint: check the path; a layer named by img-pull's document is gone from its cache: pull the image again\n"),
        ]
        for (name, status, stderr) in cases {
            let result = try box.run("img-squash", ["-q", "-o", "out/image.sqsh", l + "/good.tar", l + "/" + name])
            #expect(result.status == status, "\(name): \(result)")
            #expect(result.stderr == stderr, "\(name)")
            #expect(result.stdout == "")
            // Nothing at the final path, no temporary file, no lock file.
            #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/out") == [], "\(name)")
        }
    }

    /// squashfs counts owner ids in 16 bits: 65535 distinct ones fit, one more is an error (it
    /// crashed at exactly 65536).
    @Test func distinctOwnerIdsUpToTheFormatsLimit() throws {
        let box = try Sandbox()
        let make = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import io, tarfile
            for name, count in (("fits", 65534), ("over", 65535)):
                with tarfile.open(name + ".tar", "w", format=tarfile.GNU_FORMAT) as tar:
                    for n in range(count):
                        t = tarfile.TarInfo(f"f{n}"); t.uid = t.gid = 100000 + n
                        tar.addfile(t, io.BytesIO(b""))
            """])
        #expect(make.status == 0, "\(make)")
        // With the root directory's owner, root (0): 65535 ids, then 65536.
        let fits = try box.run("img-squash", ["-q", "--keep-owners", "-o", "fits.sqsh", "fits.tar"])
        #expect(fits.status == 0, "\(fits)")
        let over = try box.run("img-squash", ["-q", "--keep-owners", "-o", "over.sqsh", "over.tar"])
        #expect(over.status == 65, "\(over)")
        #expect(over.stderr == "img-squash: error: more than 65535 distinct user and group ids\n  hint: leave out --keep-owners\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path).sorted() == ["fits.sqsh", "fits.sqsh.json", "fits.tar", "over.tar"])
    }

    static func run(_ box: Sandbox, _ command: String) throws -> ToolResult {
        try box.mkdir("out")
        let result = try sh(box, "/usr/bin/python3", [fixture, command, box.path + "/l"])
        #expect(result.status == 0, "\(result)")
        return result
    }

    /// A symbolic link's mode bits in the tar mean nothing: stored as 0777 (umoci and mksquashfs do the same).
    @Test func symbolicLinksAreMode0777() throws {
        let box = try Sandbox()
        let make = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import tarfile
            with tarfile.open("l.tar", "w") as tar:
                t = tarfile.TarInfo("link"); t.type = tarfile.SYMTYPE; t.linkname = "target"; t.mode = 0o644
                tar.addfile(t)
            """])
        #expect(make.status == 0, "\(make)")
        #expect(try box.run("img-squash", ["-q", "-o", "l.sqsh", "l.tar"]).status == 0)
        let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-lls", box.path + "/l.sqsh"])
        #expect(listing.stdout.contains("lrwxrwxrwx root/root                 6 "), "\(listing.stdout)")
    }

    /// Extended attributes Linux cannot read back (a value over 64 KiB) or that have no name
    /// after their namespace are left out with a warning each; the others are kept.
    @Test func unreadableExtendedAttributesAreLeftOut() throws {
        let box = try Sandbox()
        let make = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import io, tarfile
            with tarfile.open("x.tar", "w", format=tarfile.PAX_FORMAT) as tar:
                t = tarfile.TarInfo("f"); t.size = 1
                t.pax_headers = {"SCHILY.xattr.user.big": "v" * 70000, "SCHILY.xattr.user.": "x", "SCHILY.xattr.user.ok": "yes"}
                tar.addfile(t, io.BytesIO(b"x"))
            """])
        #expect(make.status == 0, "\(make)")
        let result = try box.run("img-squash", ["-q", "-o", "x.sqsh", "x.tar"])
        #expect(result.status == 0, "\(result)")
        #expect(result.stderr == """
            img-squash: warning: \(box.path)/x.tar: member 'f': an extended attribute named only 'user.' is left out
            img-squash: warning: \(box.path)/x.tar: member 'f': the extended attribute user.big of 70000 bytes is larger than Linux's 65536 and is left out

            """, "\(result)")
        let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-d", box.path + "/out", box.path + "/x.sqsh"])
        #expect(listing.status == 0, "\(listing)")
        let names = try Self.sh(box, "/usr/bin/getfattr", ["-d", "--absolute-names", box.path + "/out/f"])
        #expect(names.stdout.contains("user.ok=\"yes\"") && !names.stdout.contains("user.big"), "\(names)")
    }

    @Test func anImageWithoutFiles() throws {
        let box = try Sandbox()
        // Layers that hold no members (1024 zero bytes, as image builders write them).
        try box.write("empty.tar", [UInt8](repeating: 0, count: 1024))
        let result = try box.run("img-squash", ["-q", "-o", "e.sqsh", "empty.tar", "empty.tar"])
        #expect(result.status == 0, "\(result)")
        let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-lls", box.path + "/e.sqsh"])
        #expect(listing.status == 0)
        #expect(listing.stdout.hasSuffix("drwxr-xr-x root/root                 3 1970-01-01 00:00 squashfs-root\n"), "\(listing.stdout)")
    }

    @Test func badDocumentsAndUsage() throws {
        let box = try Sandbox()
        let garbage = try box.run("img-squash", [], stdin: "not json")
        #expect(garbage.status == 65)
        #expect(garbage.stderr.hasPrefix("img-squash: error: <stdin>: neither img-pull's output nor an environment document: "))
        let noOutput = try box.run("img-squash", ["layer.tar"])
        #expect(noOutput.status == 64)
        #expect(noOutput.stderr.hasPrefix("img-squash: error: give -o FILE: layer files name no image for the image store"))
        let local = try box.run("img-squash", [], stdin: "{\"schemaVersion\":1,\"image\":{\"path\":\"/x.sqsh\"},\"entrypoint\":true,\"writable\":true,\"mounts\":[],\"env\":{},\"annotations\":{}}")
        #expect(local.status == 0)
        #expect(local.stderr == "img-squash: the environment names no registry image; passed through\n")
        #expect(local.stdout.contains("\"path\" : \"/x.sqsh\""))
        // -o names a file: not empty, not a directory, not a link or device that the rename
        // would replace (as root, /dev/stdout); nothing is written there or beside it.
        let empty = try box.run("img-squash", ["-o", "", "layer.tar"])
        #expect(empty.status == 64 && empty.stderr.hasPrefix("img-squash: error: -o names the image file to write, not ''"), "\(empty)")
        try box.mkdir("a-directory")
        _ = try box.write("layer.tar", String(repeating: "\0", count: 1024))
        let directory = try box.run("img-squash", ["-o", "a-directory", "layer.tar"])
        #expect(directory.status == 74 && directory.stderr.contains("is not a regular file"), "\(directory)")
        #expect(!FileManager.default.fileExists(atPath: box.path + "/a-directory.json"))
        try FileManager.default.createSymbolicLink(atPath: box.path + "/link.sqsh", withDestinationPath: box.path + "/target.sqsh")
        let link = try box.run("img-squash", ["-o", "link.sqsh", "layer.tar"])
        #expect(link.status == 74 && link.stderr == "img-squash: error: \(box.path)/link.sqsh: is not a regular file (a directory, a symbolic link or a device); the image would replace it\n  hint: give -o the path of a new or regular file\n", "\(link)")
        let noDirectory = try box.run("img-squash", ["-o", "no/such/dir/x.sqsh", "layer.tar"])
        #expect(noDirectory.status == 66)
        #expect(noDirectory.stderr == "img-squash: error: \(box.path)/no/such/dir: the output directory does not exist\n  hint: create it first\n")
        // Negative numbers are values, said out of range (they read as "Missing value").
        let negative = try box.run("img-squash", ["--level", "-5", "-o", "x.sqsh", "layer.tar"])
        #expect(negative.status == 64 && negative.stderr.hasPrefix("img-squash: error: --level for zstd must be in 1...22\n"), "\(negative)")
        let threads = try box.run("img-pull", ["--connections", "-1", "x"])
        #expect(threads.status == 64 && threads.stderr.hasPrefix("img-pull: error: --connections must be between 1 and 256\n"), "\(threads)")
    }

    /// Times before 1970 (negative in a PAX record or a GNU base-256 field) are stored as 0, as
    /// times past 2106 are clamped, instead of failing the layer.
    @Test func timesBefore1970AreStoredAsZero() throws {
        let box = try Sandbox()
        let make = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import io, tarfile
            for name, fmt in (("pax.tar", tarfile.PAX_FORMAT), ("gnu.tar", tarfile.GNU_FORMAT)):
                with tarfile.open(name, "w", format=fmt) as tar:
                    t = tarfile.TarInfo("old"); t.mtime = -1000; t.size = 1
                    tar.addfile(t, io.BytesIO(b"x"))
            """])
        #expect(make.status == 0, "\(make)")
        for layer in ["pax.tar", "gnu.tar"] {
            let result = try box.run("img-squash", ["-q", "-o", layer + ".sqsh", layer])
            #expect(result.status == 0, "\(layer): \(result)")
            let listing = try Self.sh(box, "/usr/bin/unsquashfs", ["-lln", box.path + "/" + layer + ".sqsh"])
            #expect(listing.stdout.contains("1970-01-01 00:00 squashfs-root/old"), "\(listing)")
        }
    }

    @Test func anInterruptedRunLeavesNothingBehind() throws {
        let box = try Sandbox()
        _ = try Self.run(box, "bad")
        // A layer slow enough to interrupt: 48 MiB of random data, gzip level 9.
        let make = try Self.sh(box, "/usr/bin/python3", ["-c", """
            import io, os, tarfile
            with tarfile.open("big.tar", "w") as tar:
                for n in range(3):
                    t = tarfile.TarInfo(f"f{n}"); t.size = 16 << 20
                    tar.addfile(t, io.BytesIO(os.urandom(t.size)))
            """])
        #expect(make.status == 0, "\(make)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Tools.path("img-squash"))
        process.arguments = ["-q", "--compression", "gzip", "--level", "9", "--threads", "1", "-o", box.path + "/out/image.sqsh", box.path + "/big.tar"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until the build has started (its temporary file exists), then stop it.
        for _ in 0..<200 {
            if try FileManager.default.contentsOfDirectory(atPath: box.path + "/out").contains(where: { $0.hasPrefix(".image.sqsh.tmp.") }) { break }
            usleep(10_000)
        }
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/out") == [])

        // What a run killed with SIGKILL leaves is removed by the next run for that image.
        try box.write("out/.image.sqsh.tmp.4194303", "partial")
        let next = try box.run("img-squash", ["-o", "out/image.sqsh", box.path + "/l/good.tar"])
        #expect(next.status == 0, "\(next)")
        #expect(next.stderr.contains("img-squash: removed \(box.path)/out/.image.sqsh.tmp.4194303, left by an interrupted run\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/out").sorted() == ["image.sqsh", "image.sqsh.json"])
        // Also when the process that left it still exists (a zombie not yet reaped, a process on
        // another node of a shared store): under the image's lock no other run is writing one.
        try box.write("out/.image.sqsh.tmp.\(getpid())", "partial")
        let again = try box.run("img-squash", ["-q", "-o", "out/image.sqsh", box.path + "/l/good.tar"])
        #expect(again.status == 0, "\(again)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/out").sorted() == ["image.sqsh", "image.sqsh.json"])

        // Files planted as symbolic links where img-squash writes (a store shared by a group) are
        // never followed: the lock, the temporary image.
        try FileManager.default.createSymbolicLink(atPath: box.path + "/out/planted.sqsh.lock", withDestinationPath: box.path + "/victim")
        let planted = try box.run("img-squash", ["-o", "out/planted.sqsh", box.path + "/l/good.tar"])
        #expect(planted.status == 74, "\(planted)")
        #expect(planted.stderr == "img-squash: error: \(box.path)/out/planted.sqsh.lock: the lock file is a symbolic link, which img-squash never makes\n  hint: remove it (rm \(box.path)/out/planted.sqsh.lock) and run again\n")
        #expect(!FileManager.default.fileExists(atPath: box.path + "/victim"))
        try FileManager.default.removeItem(atPath: box.path + "/out/planted.sqsh.lock")

        let threads = try box.run("img-squash", ["-o", "out/other.sqsh", box.path + "/l/good.tar"], environment: ["ENROOT_MAX_PROCESSORS": "0"])
        #expect(threads.status == 65)
        #expect(threads.stderr == "img-squash: error: key 'ENROOT_MAX_PROCESSORS': \"0\" is not a number from 1 to 1024\n  hint: unset it or give a number in range\n")
    }

    @Test func aFullDiskLeavesNothingBehind() throws {
        let box = try Sandbox()
        _ = try Self.run(box, "bad")
        guard getuid() == 0 else {
            print("skipped: a small tmpfs for the full-disk test needs root")
            return
        }
        try box.mkdir("small")
        let mount = try Self.sh(box, "/usr/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", box.path + "/small"])
        guard mount.status == 0 else {
            print("skipped: cannot mount a tmpfs: \(mount.stderr)")
            return
        }
        defer { _ = try? Self.sh(box, "/usr/bin/umount", [box.path + "/small"]) }
        let result = try box.run("img-squash", ["-q", "--compression", "none", "-o", "small/image.sqsh", box.path + "/l/good.tar"])
        #expect(result.status == 74, "\(result)")
        #expect(result.stderr == "img-squash: error: \(box.path)/small/image.sqsh: cannot write the image: No space left on device\n  hint: free space there or write the image elsewhere (-o, EDF_IMAGESTORE)\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/small") == [])

        // Room for the image but not for its metadata: the same kind of message, nothing kept.
        let sized = try box.run("img-squash", ["-q", "--compression", "none", "-o", "sized.sqsh", box.path + "/l/good.tar"])
        #expect(sized.status == 0, "\(sized)")
        let bytes = try FileManager.default.attributesOfItem(atPath: box.path + "/sized.sqsh")[.size] as? Int ?? 0
        try box.mkdir("exact")
        let exact = try Self.sh(box, "/usr/bin/mount", ["-t", "tmpfs", "-o", "size=\((bytes + 4095) / 4096 * 4)k", "tmpfs", box.path + "/exact"])
        #expect(exact.status == 0, "\(exact)")
        defer { _ = try? Self.sh(box, "/usr/bin/umount", [box.path + "/exact"]) }
        let full = try box.run("img-squash", ["-q", "--compression", "none", "-o", "exact/image.sqsh", box.path + "/l/good.tar"])
        #expect(full.status == 74, "\(full)")
        #expect(full.stderr == "img-squash: error: \(box.path)/exact/image.sqsh.json: cannot write the image's metadata: No space left on device; the image is not kept\n  hint: free space there or write the image elsewhere (-o, EDF_IMAGESTORE)\n", "\(full)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path + "/exact") == [])
    }
}
