/// What img-build adds to the environment document (key `build`): how the EDF's Containerfile was
/// built. The image it built replaces `pull`, so that img-squash squashes it like a pulled one.
public struct BuildResult: Codable, Sendable, Equatable {
    /// The Containerfile (absolute path).
    public var containerfile: String
    /// The build context: the Containerfile's directory.
    public var context: String
    /// The builder that ran (`ch-image 0.31`, `buildah 1.28.2`, `podman 4.3.1`).
    public var builder: String
    /// The cache key: SHA-256 of the Containerfile, every file of the context, the base image's
    /// digest, the build arguments, the builder and the architecture.
    public var key: String
    /// The image the build started from (the EDF's `image`), nil when the Containerfile's FROM alone names it.
    public var base: Base?
    /// The build arguments given to the builder (`BASE_IMAGE` among them when there is a base).
    public var buildArgs: [String: String]
    /// An image built earlier with the same key was used; nothing was built.
    public var reused: Bool

    /// Every key, `null` included (as the environment document): consumers see the same keys.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(containerfile, forKey: .containerfile)
        try container.encode(context, forKey: .context)
        try container.encode(builder, forKey: .builder)
        try container.encode(key, forKey: .key)
        try container.encode(base, forKey: .base)
        try container.encode(buildArgs, forKey: .buildArgs)
        try container.encode(reused, forKey: .reused)
    }

    /// The base image as the builder got it.
    public struct Base: Codable, Sendable, Equatable {
        /// The EDF's image: a normalised reference, or a squashfs file's path.
        public var reference: String
        /// The manifest digest of a pulled image; for a squashfs file, the digest of its path, size and time.
        public var digest: String
        /// The name the base has in the builder (what `BASE_IMAGE` holds).
        public var builderName: String

        public init(reference: String, digest: String, builderName: String) {
            self.reference = reference
            self.digest = digest
            self.builderName = builderName
        }
    }

    public init(
        containerfile: String, context: String, builder: String, key: String, base: Base?, buildArgs: [String: String],
        reused: Bool
    ) {
        self.containerfile = containerfile
        self.context = context
        self.builder = builder
        self.key = key
        self.base = base
        self.buildArgs = buildArgs
        self.reused = reused
    }
}

/// What img-build keeps in the cache for each key (`builds/<hex>.json`), and prints when given a
/// Containerfile alone: the built image, as img-pull describes a pulled one, and how it was built.
public struct BuiltImage: Codable, Sendable, Equatable {
    public var pull: PullResult
    public var build: BuildResult

    public init(pull: PullResult, build: BuildResult) {
        self.pull = pull
        self.build = build
    }

    enum CodingKeys: String, CodingKey {
        case build
    }

    /// The same JSON object as img-pull's output, with `build` added: img-squash reads it as a pull.
    public init(from decoder: any Decoder) throws {
        pull = try PullResult(from: decoder)
        build = try decoder.container(keyedBy: CodingKeys.self).decode(BuildResult.self, forKey: .build)
    }

    public func encode(to encoder: any Encoder) throws {
        try pull.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(build, forKey: .build)
    }
}
