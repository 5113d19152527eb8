import Foundation
import OCI
import Testing

/// img-pull from an OCI image layout directory (images built elsewhere, brought as files).
struct LayoutImportTests {
    @Test func importsALayout() throws {
        let box = try Sandbox()
        let builder = try ImageBuilder(root: box.url.appendingPathComponent("layout"))
        let image = try builder.image(architecture: "amd64", layers: [["a": "1"], ["b": "2"]], env: ["X=1"])
        _ = try builder.tag("v1", manifests: [(image.digest, image.size, "amd64", nil)])
        let result = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout"])
        #expect(result.status == 0, "\(result)")
        let doc = try box.json(result)
        #expect(doc["reference"] as? String == "oci:\(box.path)/layout")
        #expect(doc["tag"] as? String == "v1")
        #expect(doc["manifestDigest"] as? String == image.built.manifest)
        let layers = try #require(doc["layers"] as? [[String: Any]])
        #expect(layers.map { $0["digest"] as? String } == image.built.layers)
        for layer in layers {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try #require(layer["path"] as? String))))
            #expect(Digest(of: bytes).description == layer["digest"] as? String)
        }
        #expect((doc["config"] as? [String: Any])?["Env"] as? [String] == ["X=1"])
    }

    @Test func multiPlatformLayout() throws {
        let box = try Sandbox()
        let builder = try ImageBuilder(root: box.url.appendingPathComponent("layout"))
        let a = try builder.image(architecture: "amd64", layers: [["arch": "amd64"]])
        let b = try builder.image(architecture: "arm64", variant: "v8", layers: [["arch": "arm64"]])
        _ = try builder.tag("1", manifests: [(a.digest, a.size, "amd64", nil), (b.digest, b.size, "arm64", "v8")])
        let arm = try box.run("img-pull", ["--cache", box.path + "/cache", "-q", "--arch", "arm64", box.path + "/layout", "--tag", "1"])
        #expect(arm.status == 0, "\(arm)")
        #expect(try box.json(arm)["manifestDigest"] as? String == b.built.manifest)
        let wrongTag = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout", "--tag", "2"])
        #expect(wrongTag.status == 66)
        #expect(wrongTag.stderr == "img-pull: error: \(box.path)/layout/index.json: no image tagged '2'; the layout has: 1\n")
    }

    @Test func damagedLayouts() throws {
        let box = try Sandbox()
        let notLayout = try box.run("img-pull", ["--cache", box.path + "/cache", "./"])
        #expect(notLayout.status == 65)
        #expect(notLayout.stderr == "img-pull: error: \(box.path): not an OCI image layout (no oci-layout file)\n  hint: give a directory written by skopeo copy ... oci:DIR, podman save --format oci-dir, or umoci\n")

        let builder = try ImageBuilder(root: box.url.appendingPathComponent("layout"))
        let image = try builder.image(architecture: "amd64", layers: [["big": String(repeating: "x", count: 10000)]])
        _ = try builder.tag("v1", manifests: [(image.digest, image.size, "amd64", nil)])
        // Corrupt the layer: same size, other bytes.
        let layerPath = box.path + "/layout/blobs/sha256/" + image.built.layers[0].dropFirst(7)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: layerPath))
        bytes[bytes.count / 2] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: layerPath))
        let corrupt = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout"])
        #expect(corrupt.status == 65)
        #expect(corrupt.stderr.contains("does not match its digest"))
        #expect(!FileManager.default.fileExists(atPath: box.path + "/cache/blobs/sha256/" + image.built.layers[0].dropFirst(7)))
        #expect(corrupt.stderr.contains("hint: the layout is damaged; copy it again (nothing was cached)"), "\(corrupt)")
        // A byte more than its descriptor declares: refused, nothing cached.
        try (bytes + Data([0])).write(to: URL(fileURLWithPath: layerPath))
        let longer = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout"])
        #expect(longer.status == 65, "\(longer)")
        #expect(longer.stderr.contains("is larger than the \(bytes.count) bytes its descriptor declares\n  hint: the layout is damaged"), "\(longer)")
        #expect(!FileManager.default.fileExists(atPath: box.path + "/cache/blobs/sha256/" + image.built.layers[0].dropFirst(7)))
        // A fifo in the place of a layer: refused at once, not a read that waits forever.
        try FileManager.default.removeItem(atPath: layerPath)
        #expect(mkfifo(layerPath, 0o644) == 0)
        let fifo = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout"])
        #expect(fifo.status == 65, "\(fifo)")
        #expect(fifo.stderr == "img-pull: error: \(layerPath): layer \(image.built.layers[0]) is not a regular file\n  hint: the layout is damaged; copy it again\n", "\(fifo)")
        // A missing layer.
        try FileManager.default.removeItem(atPath: layerPath)
        let missing = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout"])
        #expect(missing.status == 66)
        #expect(missing.stderr == "img-pull: error: \(layerPath): layer \(image.built.layers[0]) is missing from the layout\n  hint: the layout is incomplete; copy it again\n")
        // A layout without images.
        try box.write("empty/oci-layout", #"{"imageLayoutVersion": "1.0.0"}"#)
        try box.write("empty/index.json", #"{"schemaVersion": 2, "manifests": []}"#)
        let empty = try box.run("img-pull", ["--cache", box.path + "/cache", "./empty"])
        #expect(empty.status == 65 && empty.stderr == "img-pull: error: \(box.path)/empty/index.json: the layout holds no image\n", "\(empty)")
    }
}

/// img-pull from docker save and OCI archive tar files.
struct ArchiveImportTests {
    @Test func dockerSaveAndOCIArchives() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/skopeo") else {
            print("skipped: skopeo is not installed (apt-get install skopeo), it writes the archives")
            return
        }
        let box = try Sandbox()
        let builder = try ImageBuilder(root: box.url.appendingPathComponent("layout"))
        let image = try builder.image(architecture: "amd64", layers: [["a": "1"], ["b": String(repeating: "2", count: 5000)]], env: ["X=1"])
        _ = try builder.tag("v1", manifests: [(image.digest, image.size, "amd64", nil)])
        try shell("skopeo copy -q oci:'\(box.path)/layout':v1 oci-archive:'\(box.path)/oci.tar':v1")
        try shell("skopeo copy -q oci:'\(box.path)/layout':v1 docker-archive:'\(box.path)/docker.tar':demo/app:v1")

        let oci = try box.run("img-pull", ["--cache", box.path + "/cache", "-q", "./oci.tar"])
        #expect(oci.status == 0, "\(oci)")
        let ociDoc = try box.json(oci)
        #expect(ociDoc["manifestDigest"] as? String == image.built.manifest)
        #expect(ociDoc["reference"] as? String == "archive:\(box.path)/oci.tar")

        let docker = try box.run("img-pull", ["--cache", box.path + "/cache", "-q", "./docker.tar", "--tag", "v1"])
        #expect(docker.status == 0, "\(docker)")
        let doc = try box.json(docker)
        #expect(doc["tag"] as? String == "docker.io/demo/app:v1")
        #expect((doc["config"] as? [String: Any])?["Env"] as? [String] == ["X=1"])
        let layers = try #require(doc["layers"] as? [[String: Any]])
        #expect(layers.count == 2)
        for layer in layers {
            #expect(layer["mediaType"] as? String == "application/vnd.oci.image.layer.v1.tar")
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try #require(layer["path"] as? String))))
            #expect(Digest(of: bytes).description == layer["digest"] as? String)
        }
        let wrongTag = try box.run("img-pull", ["--cache", box.path + "/cache", "./docker.tar", "--tag", "v2"])
        #expect(wrongTag.status == 66)
        #expect(wrongTag.stderr == "img-pull: error: \(box.path)/docker.tar: no image tagged 'v2'; the archive has: docker.io/demo/app:v1\n")
        // skopeo writes the whole name; --tag names the image as docker does.
        for name in ["demo/app:v1", "docker.io/demo/app:v1", "registry-1.docker.io/demo/app:v1"] {
            let named = try box.run("img-pull", ["--cache", box.path + "/cache", "-q", "./docker.tar", "--tag", name])
            #expect(named.status == 0, "\(name): \(named)")
            let digest = try box.json(named)["manifestDigest"] as? String
            #expect(digest == doc["manifestDigest"] as? String, "\(name)")
        }
        let otherRepository = try box.run("img-pull", ["--cache", box.path + "/cache", "./docker.tar", "--tag", "demo/other:v1"])
        #expect(otherRepository.status == 66, "\(otherRepository)")

        try box.write("notatar.tar", "hello")
        let notTar = try box.run("img-pull", ["--cache", box.path + "/cache", "./notatar.tar"])
        #expect(notTar.status == 65)
        #expect(notTar.stderr == "img-pull: error: \(box.path)/notatar.tar: not a tar archive\n  hint: give a docker save or OCI archive .tar file (also gzip or zstd compressed)\n")
    }

    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/archive_fixture.py").path

    /// The classic docker save format as users bring it: compressed, with a registry's name as
    /// its tag, checked against its config, with a layer stored once as a hard link.
    @Test func dockerSaveVariants() throws {
        let box = try Sandbox()
        let cache = box.path + "/cache"
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/ngc.tar' --tag nvcr.io/nvidia/pytorch:24.01-py3")
        _ = try shell("gzip -c '\(box.path)/ngc.tar' > '\(box.path)/ngc.tar.gz' && zstd -q -c '\(box.path)/ngc.tar' > '\(box.path)/ngc.tar.zst'")
        let plain = try box.run("img-pull", ["--cache", cache, "-q", "./ngc.tar"])
        #expect(plain.status == 0, "\(plain)")
        // An archive cut short: which member, and where the file ends.
        let whole = try Data(contentsOf: URL(fileURLWithPath: box.path + "/ngc.tar"))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: box.path + "/cut.tar"))
        let cut = try box.run("img-pull", ["--cache", cache, "-q", "./cut.tar"])
        #expect(cut.status == 65, "\(cut)")
        #expect(cut.stderr.hasPrefix("img-pull: error: \(box.path)/cut.tar: truncated tar archive: member '"), "\(cut)")
        #expect(cut.stderr.hasSuffix(", but the file ends at byte \(whole.count / 2)\n  hint: the archive is incomplete or damaged: make or copy it again\n"), "\(cut)")
        // Two images with the same tag: the bare tag names neither; the whole name, or the name
        // docker would normalise to it, names one.
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/two.tar' --tag nvcr.io/nvidia/pytorch:24.01-py3 --also other:24.01-py3")
        let ambiguous = try box.run("img-pull", ["--cache", cache, "-q", "./two.tar", "--tag", "24.01-py3"])
        #expect(ambiguous.status == 65)
        #expect(ambiguous.stderr == "img-pull: error: \(box.path)/two.tar: '24.01-py3' names 2 images in the archive: nvcr.io/nvidia/pytorch:24.01-py3, other:24.01-py3\n  hint: give the whole name with --tag\n")
        for (name, env) in [("nvcr.io/nvidia/pytorch:24.01-py3", "FROM_ARCHIVE=1"), ("docker.io/library/other:24.01-py3", "FROM_ARCHIVE=2")] {
            let one = try box.run("img-pull", ["--cache", cache, "-q", "./two.tar", "--tag", name])
            #expect(one.status == 0, "\(one)")
            let config = try box.json(one)["config"] as? [String: Any]
            #expect((config?["Env"] as? [String])?.contains(env) == true, "\(name): \(one)")
        }
        let manifest = try box.json(plain)["manifestDigest"] as? String
        for compressed in ["./ngc.tar.gz", "./ngc.tar.zst"] {
            let result = try box.run("img-pull", ["--cache", cache, "-q", compressed])
            #expect(result.status == 0, "\(result)")
            #expect(try box.json(result)["manifestDigest"] as? String == manifest, "\(compressed)")
        }
        // The decompressed copies are gone.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache + "/tmp").isEmpty)
        // One flat file in the image store, whatever the tag holds.
        try FileManager.default.createDirectory(atPath: box.path + "/store", withIntermediateDirectories: true)
        let squashed = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": box.path + "/store"], stdin: plain.stdout)
        #expect(squashed.status == 0, "\(squashed)")
        let stored = try FileManager.default.contentsOfDirectory(atPath: box.path + "/store").filter { $0.hasSuffix(".sqsh") }
        #expect(stored == ["local+\(box.path.dropFirst().replacingOccurrences(of: "/", with: "+"))+ngc.tar+nvcr.io+nvidia+pytorch:24.01-py3.x86_64.sqsh"])

        // Gzip layers in a manifest.json tarball (crane, kaniko, ko) are said to be gzip.
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/crane.tar' --gzip-layers")
        let crane = try box.run("img-pull", ["--cache", cache, "-q", "./crane.tar"])
        #expect(crane.status == 0, "\(crane)")
        let layers = try #require(try box.json(crane)["layers"] as? [[String: Any]])
        #expect(layers.map { $0["mediaType"] as? String } == Array(repeating: "application/vnd.oci.image.layer.v1.tar+gzip", count: 2))

        // A layer stored once, the other member a hard link to it.
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/linked.tar' --hardlink-layer")
        let linked = try box.run("img-pull", ["--cache", cache, "-q", "./linked.tar"])
        #expect(linked.status == 0, "\(linked)")
        #expect((try box.json(linked)["layers"] as? [[String: Any]])?.count == 2)

        // Damaged: a layer that is not the one its config names.
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/damaged.tar' --bad-diff-id")
        let damaged = try box.run("img-pull", ["--cache", cache, "./damaged.tar"])
        #expect(damaged.status == 65, "\(damaged)")
        #expect(damaged.stderr.hasPrefix("img-pull: error: \(box.path)/damaged.tar: layer "), "\(damaged)")
        #expect(damaged.stderr.contains("but the image config says sha256:1111111111111111111111111111111111111111111111111111111111111111\n  hint: the archive is damaged: save the image again\n"), "\(damaged)")
        #expect(damaged.stdout.isEmpty)

        // A path that is not there.
        let missing = try box.run("img-pull", ["--cache", cache, "./nothere.tar"])
        #expect(missing.status == 66)
        #expect(missing.stderr == "img-pull: error: \(box.path)/nothere.tar: no such file or directory\n  hint: give an OCI image layout directory, a docker save or OCI archive file, or a registry reference\n")
    }

    /// A single-platform image for another machine: a warning, or an error when --arch asked.
    @Test func singlePlatformImageForAnotherMachine() throws {
        let box = try Sandbox()
        let cache = box.path + "/cache"
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/other.tar' --arch s390x")
        let warned = try box.run("img-pull", ["--cache", cache, "-q", "./other.tar"])
        #expect(warned.status == 0, "\(warned)")
        #expect(warned.stderr.hasPrefix("img-pull: warning: archive:\(box.path)/other.tar is an image for linux/s390x, not for this machine (linux/"), "\(warned)")
        let refused = try box.run("img-pull", ["--cache", cache, "-q", "--arch", "amd64", "./other.tar"])
        #expect(refused.status == 66, "\(refused)")
        #expect(refused.stderr == "img-pull: error: archive:\(box.path)/other.tar is an image for linux/s390x only, not for linux/amd64\n  hint: leave out --arch, or pull an image built for linux/amd64\n")
        let asked = try box.run("img-pull", ["--cache", cache, "-q", "--arch", "s390x", "./other.tar"])
        #expect(asked.status == 0, "\(asked)")
        #expect(asked.stderr.isEmpty, "\(asked)")
    }

    /// aufs bookkeeping in old layers (.wh..wh.aufs, .wh..wh.orph/, .wh..wh.plnk/ and below) is
    /// left out of the image, as Docker leaves it out.
    @Test func aufsBookkeepingIsLeftOut() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unsquashfs") else {
            print("skipped: unsquashfs is not installed (apt-get install squashfs-tools)")
            return
        }
        let box = try Sandbox()
        _ = try shell("python3 '\(Self.fixture)' docker-save '\(box.path)/aufs.tar' --aufs")
        let pulled = try box.run("img-pull", ["--cache", box.path + "/cache", "-q", "./aufs.tar"])
        #expect(pulled.status == 0, "\(pulled)")
        let squashed = try box.run("img-squash", ["-q", "-o", box.path + "/aufs.sqsh"], stdin: pulled.stdout)
        #expect(squashed.status == 0, "\(squashed)")
        let listing = try shell("unsquashfs -l -d '' '\(box.path)/aufs.sqsh'")
        let paths = listing.split(separator: "\n").filter { $0.hasPrefix("/") }.map(String.init)
        #expect(paths == ["/etc", "/etc/first.txt", "/etc/second.txt"], "\(listing)")
        // Without -o, EDF_IMAGESTORE and SCRATCH: the image store is in the cache it was pulled into.
        let stored = try box.run("img-squash", ["-q"], environment: ["EDF_IMAGESTORE": "", "SCRATCH": "", "HOME": box.path + "/home"], stdin: pulled.stdout)
        #expect(stored.status == 0, "\(stored)")
        let images = try FileManager.default.contentsOfDirectory(atPath: box.path + "/cache/images").filter { $0.hasSuffix(".sqsh") }
        #expect(images.count == 1, "\(images)")
        #expect(!FileManager.default.fileExists(atPath: box.path + "/home"))
    }

    /// umoci writes the root directory's entry as "/": the root, as "./" is; other absolute
    /// paths stay refused.
    @Test func aRootEntryNamedSlashIsTheRoot() throws {
        let box = try Sandbox()
        _ = try shell("""
            python3 -c 'import io, tarfile
            with tarfile.open("\(box.path)/root.tar", "w") as t:
                for name in ["/", "etc"]:
                    i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o750; t.addfile(i)
                i = tarfile.TarInfo("etc/x"); i.size = 3; t.addfile(i, io.BytesIO(b"hi\\n"))
            with tarfile.open("\(box.path)/abs.tar", "w") as t:
                i = tarfile.TarInfo("/etc/x"); i.size = 3; t.addfile(i, io.BytesIO(b"hi\\n"))'
            """)
        let root = try box.run("img-squash", ["-q", "-o", box.path + "/root.sqsh", box.path + "/root.tar"])
        #expect(root.status == 0, "\(root)")
        let listing = try shell("unsquashfs -lls -d '' '\(box.path)/root.sqsh'")
        #expect(listing.contains("drwxr-x--- root/root") && listing.contains("/etc/x"), "\(listing)")
        let absolute = try box.run("img-squash", ["-q", "-o", box.path + "/abs.sqsh", box.path + "/abs.tar"])
        #expect(absolute.status == 65 && absolute.stderr.contains("absolute path"), "\(absolute)")
    }
}
