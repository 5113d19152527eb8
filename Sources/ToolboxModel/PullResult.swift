/// What img-pull adds to the environment document (key `pull`), or prints alone when given a
/// reference: the image as resolved for one platform, with every blob in the local cache.
public struct PullResult: Codable, Sendable, Equatable {
    /// The normalised reference that was pulled (`registry/repository[:tag][@digest]`).
    public var reference: String
    public var registry: String
    public var repository: String
    public var tag: String?
    /// The digest of the platform's image manifest.
    public var manifestDigest: String
    /// The digest of the multi-platform index or manifest list the manifest was chosen from.
    public var indexDigest: String?
    public var mediaType: String
    public var platform: PlatformSpec
    /// The cache that holds the blobs.
    public var cache: String
    public var config: ImageConfigSummary
    /// The layers, bottom first.
    public var layers: [Layer]

    public init(
        reference: String, registry: String, repository: String, tag: String?, manifestDigest: String,
        indexDigest: String?, mediaType: String, platform: PlatformSpec, cache: String, config: ImageConfigSummary,
        layers: [Layer]
    ) {
        self.reference = reference
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.manifestDigest = manifestDigest
        self.indexDigest = indexDigest
        self.mediaType = mediaType
        self.platform = platform
        self.cache = cache
        self.config = config
        self.layers = layers
    }

    /// Every key, `null` included (as the environment document): consumers see the same keys.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(reference, forKey: .reference)
        try container.encode(registry, forKey: .registry)
        try container.encode(repository, forKey: .repository)
        try container.encode(tag, forKey: .tag)
        try container.encode(manifestDigest, forKey: .manifestDigest)
        try container.encode(indexDigest, forKey: .indexDigest)
        try container.encode(mediaType, forKey: .mediaType)
        try container.encode(platform, forKey: .platform)
        try container.encode(cache, forKey: .cache)
        try container.encode(config, forKey: .config)
        try container.encode(layers, forKey: .layers)
    }

    public struct PlatformSpec: Codable, Sendable, Equatable {
        public var os: String
        public var architecture: String
        public var variant: String?

        public init(os: String, architecture: String, variant: String?) {
            self.os = os
            self.architecture = architecture
            self.variant = variant
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(os, forKey: .os)
            try container.encode(architecture, forKey: .architecture)
            try container.encode(variant, forKey: .variant)
        }
    }

    /// One layer blob in the cache.
    public struct Layer: Codable, Sendable, Equatable {
        public var digest: String
        public var mediaType: String
        public var size: Int64
        /// The blob's file in the cache.
        public var path: String

        public init(digest: String, mediaType: String, size: Int64, path: String) {
            self.digest = digest
            self.mediaType = mediaType
            self.size = size
            self.path = path
        }
    }

    /// The parts of the image configuration the runtime uses (OCI config names).
    public struct ImageConfigSummary: Codable, Sendable, Equatable {
        public var digest: String
        public var path: String
        public var Env: [String]
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?
        public var User: String?
        public var Volumes: [String]
        public var Labels: [String: String]

        public init(
            digest: String, path: String, Env: [String], Entrypoint: [String]?, Cmd: [String]?, WorkingDir: String?,
            User: String?, Volumes: [String], Labels: [String: String]
        ) {
            self.digest = digest
            self.path = path
            self.Env = Env
            self.Entrypoint = Entrypoint
            self.Cmd = Cmd
            self.WorkingDir = WorkingDir
            self.User = User
            self.Volumes = Volumes
            self.Labels = Labels
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(digest, forKey: .digest)
            try container.encode(path, forKey: .path)
            try container.encode(Env, forKey: .Env)
            try container.encode(Entrypoint, forKey: .Entrypoint)
            try container.encode(Cmd, forKey: .Cmd)
            try container.encode(WorkingDir, forKey: .WorkingDir)
            try container.encode(User, forKey: .User)
            try container.encode(Volumes, forKey: .Volumes)
            try container.encode(Labels, forKey: .Labels)
        }
    }
}

extension PullResult {
    /// What img-pull would never write: digests that are not sha256:<64 hex digits>, relative
    /// paths. Checked by the stages that read a pull (a document may be edited between them).
    public var problems: [(key: String, message: String)] {
        let digest: (String) -> Bool = { ImageReference.isSHA256Digest($0) }
        var found: [(key: String, message: String)] = []
        if !digest(manifestDigest) { found.append(("pull.manifestDigest", "\"\(manifestDigest)\" is not a sha256 digest")) }
        if !digest(config.digest) { found.append(("pull.config.digest", "\"\(config.digest)\" is not a sha256 digest")) }
        for (index, layer) in layers.enumerated() {
            if !digest(layer.digest) { found.append(("pull.layers[\(index)].digest", "\"\(layer.digest)\" is not a sha256 digest")) }
            if !layer.path.hasPrefix("/") { found.append(("pull.layers[\(index)].path", "\"\(layer.path)\" is not an absolute path")) }
        }
        return found
    }
}
