import Glibc
import FoundationEssentials
import ToolboxCore
import ToolboxModel

/// Everything ns-enter needs to build a container, taken from the environment document (or from
/// the standalone flags).
public struct ContainerSpec: Sendable {
    /// The squashfs image of the root file system (absolute path).
    public var image: String
    /// What the runtime uses from the image config (Env, Entrypoint, Cmd, WorkingDir).
    public var config: PullResult.ImageConfigSummary?
    public var mounts: [Mount]
    /// The EDF's variables; an empty value unsets.
    public var env: [String: String]
    public var workdir: String?
    public var writable: Bool
    public var entrypoint: Bool
    public var annotations: [String: String]
    /// Map the caller to root inside the container.
    public var remapRoot: Bool
    /// An image no stage of the toolbox made (no config in the document, no IMAGE.json beside
    /// it: `enroot import`, mksquashfs): its Env is in its /etc/environment, as enroot keeps it.
    public var foreignImage = false

    public init(
        image: String, config: PullResult.ImageConfigSummary? = nil, mounts: [Mount] = [], env: [String: String] = [:],
        workdir: String? = nil, writable: Bool = false, entrypoint: Bool = false, annotations: [String: String] = [:],
        remapRoot: Bool = false
    ) {
        self.image = image
        self.config = config
        self.mounts = mounts
        self.env = env
        self.workdir = workdir
        self.writable = writable
        self.entrypoint = entrypoint
        self.annotations = annotations
        self.remapRoot = remapRoot
    }

    /// The image config img-squash keeps beside an image (`IMAGE.json`), if there is one.
    /// Whether img-squash's metadata file is beside the image.
    public static func hasMetadata(_ image: String) -> Bool {
        access(image + ".json", F_OK) == 0
    }

    public static func storedConfig(of image: String) -> PullResult.ImageConfigSummary? {
        guard let text = try? FileReader.readText(image + ".json"),
            let stored = try? JSONDecoder().decode(SquashResult.self, from: Data(text.utf8))
        else { return nil }
        return stored.config
    }

    /// The spec of a rendered environment document: the image from img-squash's result (`squash`),
    /// or the EDF's own squashfs file, with its config from the document or from the metadata file
    /// img-squash keeps beside the image.
    public static func from(document: EnvironmentDocument, source: String?) throws(Diagnostic) -> ContainerSpec {
        let image: String
        var config = document.squash?.config
        if let squash = document.squash {
            image = squash.path
            // A saved document whose image was built again since (a moved tag): its config and
            // its digest describe another file.
            var info = stat()
            if squash.size > 0, stat(image, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int64(info.st_size) != squash.size {
                throw Diagnostic(
                    kind: .invalid, file: source, key: "squash.path",
                    message: "\(image) is not the image this document describes (\(info.st_size) bytes, the document says \(squash.size)): it was built again since",
                    hint: "run the pipeline again for a document of the image there now (edf-expand ENV | img-pull | img-squash)")
            }
        } else if case .local(let path) = document.image {
            image = path
        } else if document.image == nil {
            throw Diagnostic(
                kind: .invalid, file: source, key: "image", message: "the environment names no image",
                hint: "add image = \"...\" to the EDF, or run a command without ns-enter")
        } else {
            throw Diagnostic(
                kind: .invalid, file: source, key: "squash",
                message: "the environment's image has not been squashed yet",
                hint: "run the document through img-pull and img-squash first: img-pull < env.json | img-squash > ready.json")
        }
        if config == nil { config = storedConfig(of: image) }
        var spec = ContainerSpec(
            image: image, config: config, mounts: document.mounts, env: document.env, workdir: document.workdir,
            writable: document.writable, entrypoint: document.entrypoint, annotations: document.annotations)
        spec.foreignImage = config == nil && document.squash == nil && !hasMetadata(image)
        return spec
    }
}
