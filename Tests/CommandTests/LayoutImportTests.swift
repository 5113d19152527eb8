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
        // A missing layer.
        try FileManager.default.removeItem(atPath: layerPath)
        let missing = try box.run("img-pull", ["--cache", box.path + "/cache", "./layout"])
        #expect(missing.status == 66)
        #expect(missing.stderr == "img-pull: error: \(layerPath): layer \(image.built.layers[0]) is missing from the layout\n  hint: the layout is incomplete; copy it again\n")
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

        try box.write("notatar.tar", "hello")
        let notTar = try box.run("img-pull", ["--cache", box.path + "/cache", "./notatar.tar"])
        #expect(notTar.status == 65)
        #expect(notTar.stderr == "img-pull: error: \(box.path)/notatar.tar: not a tar archive\n  hint: give a docker save or OCI archive .tar file, uncompressed\n")
    }
}
