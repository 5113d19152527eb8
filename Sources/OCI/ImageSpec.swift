// Types of the OCI image spec (image-spec specs-go/v1: descriptor.go, manifest.go, index.go,
// config.go) and of Docker's manifest v2 schema 2 and manifest list, which have the same shape.

/// A reference to content: media type, digest and size (descriptor.go).
public struct Descriptor: Codable, Sendable, Equatable, Hashable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var urls: [String]?
    public var annotations: [String: String]?
    /// In an index: the platform of the manifest this descriptor points to.
    public var platform: Platform?

    public init(mediaType: String, digest: Digest, size: Int64, platform: Platform? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.platform = platform
    }
}

/// An operating system and CPU (descriptor.go, Platform).
public struct Platform: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public var architecture: String
    public var os: String
    public var variant: String?
    public var osVersion: String?

    enum CodingKeys: String, CodingKey {
        case architecture, os, variant
        case osVersion = "os.version"
    }

    public init(os: String = "linux", architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    /// `os/architecture[/variant]`, as in `--platform` options.
    public var description: String {
        [os, architecture, variant].compactMap { $0 }.joined(separator: "/")
    }
}

/// A single-platform image manifest (manifest.go; Docker schema 2 has the same fields).
public struct Manifest: Codable, Sendable, Equatable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
    public var annotations: [String: String]?

    public init(schemaVersion: Int, mediaType: String?, config: Descriptor, layers: [Descriptor], annotations: [String: String]?) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.config = config
        self.layers = layers
        self.annotations = annotations
    }
}

/// A multi-platform index (index.go; Docker's manifest list has the same fields).
public struct Index: Codable, Sendable, Equatable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [Descriptor]
    public var annotations: [String: String]?

    public init(schemaVersion: Int = 2, mediaType: String? = MediaType.ociIndex, manifests: [Descriptor], annotations: [String: String]? = nil) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.manifests = manifests
        self.annotations = annotations
    }
}

/// The parts of the image configuration that the runtime uses (config.go).
public struct ImageConfiguration: Codable, Sendable, Equatable {
    public var architecture: String?
    public var os: String?
    public var variant: String?
    public var config: Runtime?
    public var rootfs: RootFS?

    public init(architecture: String?, os: String?, variant: String? = nil, config: Runtime?, rootfs: RootFS?) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
        self.config = config
        self.rootfs = rootfs
    }

    public struct Runtime: Codable, Sendable, Equatable {
        public var User: String?
        public var Env: [String]?
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?
        public var Volumes: [String: Empty]?
        public var Labels: [String: String]?
        public var StopSignal: String?

        public init() {}

        enum CodingKeys: String, CodingKey {
            case User, Env, Entrypoint, Cmd, WorkingDir, Volumes, Labels, StopSignal
        }

        /// As Docker reads a config: `Entrypoint` and `Cmd` may also be one string (moby's
        /// strslice: a one-element list), which the OCI image spec does not allow but images
        /// written by older tools have.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            User = try container.decodeIfPresent(String.self, forKey: .User)
            Env = try container.decodeIfPresent([String].self, forKey: .Env)
            Entrypoint = try Self.list(container, .Entrypoint)
            Cmd = try Self.list(container, .Cmd)
            WorkingDir = try container.decodeIfPresent(String.self, forKey: .WorkingDir)
            Volumes = try container.decodeIfPresent([String: Empty].self, forKey: .Volumes)
            Labels = try container.decodeIfPresent([String: String].self, forKey: .Labels)
            StopSignal = try container.decodeIfPresent(String.self, forKey: .StopSignal)
        }

        static func list(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> [String]? {
            if let one = try? container.decodeIfPresent(String.self, forKey: key) { return [one] }
            return try container.decodeIfPresent([String].self, forKey: key)
        }
    }

    public struct RootFS: Codable, Sendable, Equatable {
        public var type: String
        public var diff_ids: [Digest]

        public init(type: String = "layers", diff_ids: [Digest]) {
            self.type = type
            self.diff_ids = diff_ids
        }
    }

    /// The `{}` values of `Volumes`.
    public struct Empty: Codable, Sendable, Equatable {
        public init() {}
    }
}
