/// What img-squash adds to the document it passes on (key `squash`), and what it keeps beside
/// the image as `<image>.json` for the later stages: the squashfs file and the image config.
public struct SquashResult: Codable, Sendable, Equatable {
    /// The squashfs file (absolute path).
    public var path: String
    /// Its size in bytes.
    public var size: Int64
    /// The SHA-256 of the file (`sha256:<hex>`).
    public var digest: String
    public var compression: String
    public var level: Int
    public var blockSize: Int
    /// Built with the layers' owners kept (`--keep-owners`); nil (from before this was recorded)
    /// and false: every file owned by root.
    public var keepOwners: Bool?
    /// `SOURCE_DATE_EPOCH` when it was built with one: every timestamp is that time.
    public var sourceDateEpoch: Int64?
    /// The metadata file beside the image.
    public var metadata: String
    /// The manifest the image was built from (nil for layers given as files).
    public var manifestDigest: String?
    /// The normalised reference it was pulled as.
    public var reference: String?
    /// The layer digests (or files), bottom first.
    public var layers: [String]
    /// What the runtime needs from the image config (nil for layers given as files).
    public var config: PullResult.ImageConfigSummary?
    /// An image built earlier for the same manifest was used as it was.
    public var reused: Bool
    /// In the `void` image store: the file is removed when the job ends.
    public var temporary: Bool

    public init(
        path: String, size: Int64, digest: String, compression: String, level: Int, blockSize: Int,
        keepOwners: Bool?, sourceDateEpoch: Int64?, metadata: String,
        manifestDigest: String?, reference: String?, layers: [String], config: PullResult.ImageConfigSummary?,
        reused: Bool, temporary: Bool
    ) {
        self.path = path
        self.size = size
        self.digest = digest
        self.compression = compression
        self.level = level
        self.blockSize = blockSize
        self.keepOwners = keepOwners
        self.sourceDateEpoch = sourceDateEpoch
        self.metadata = metadata
        self.manifestDigest = manifestDigest
        self.reference = reference
        self.layers = layers
        self.config = config
        self.reused = reused
        self.temporary = temporary
    }

    /// Every key, `null` included (as the environment document): consumers see the same keys.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(path, forKey: .path)
        try container.encode(size, forKey: .size)
        try container.encode(digest, forKey: .digest)
        try container.encode(compression, forKey: .compression)
        try container.encode(level, forKey: .level)
        try container.encode(blockSize, forKey: .blockSize)
        try container.encode(keepOwners, forKey: .keepOwners)
        try container.encode(sourceDateEpoch, forKey: .sourceDateEpoch)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(manifestDigest, forKey: .manifestDigest)
        try container.encode(reference, forKey: .reference)
        try container.encode(layers, forKey: .layers)
        try container.encode(config, forKey: .config)
        try container.encode(reused, forKey: .reused)
        try container.encode(temporary, forKey: .temporary)
    }
}

/// img-pull's document with img-squash's result added: the same JSON object plus `squash`.
public struct SquashedPull: Codable, Sendable, Equatable {
    public var pull: PullResult
    public var squash: SquashResult

    public init(pull: PullResult, squash: SquashResult) {
        self.pull = pull
        self.squash = squash
    }

    enum CodingKeys: String, CodingKey {
        case squash
    }

    public init(from decoder: any Decoder) throws {
        pull = try PullResult(from: decoder)
        squash = try decoder.container(keyedBy: CodingKeys.self).decode(SquashResult.self, forKey: .squash)
    }

    public func encode(to encoder: any Encoder) throws {
        try pull.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(squash, forKey: .squash)
    }
}
