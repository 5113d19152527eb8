/// The documents that flow between the stages of the pipeline, defined in one place.
///
/// `edf-expand` writes an `EnvironmentDocument` as JSON on stdout; every later stage reads it (from a
/// file or stdin), adds what it produced and passes it on. README.md ("The pipeline documents")
/// describes the JSON form field by field.

/// The rendered environment: one EDF with its inheritance resolved, variables expanded, paths made
/// absolute and every value validated.
public struct EnvironmentDocument: Codable, Sendable, Equatable {
    /// The version of this document's layout; bumped on incompatible changes.
    public static let currentSchemaVersion = 1

    public var schemaVersion: Int
    /// The container image, or nil when the environment names none (no container is entered).
    public var image: ImageSource?
    /// A Containerfile to build on top of `image` (absolute path), or nil.
    public var containerfile: String?
    /// The initial working directory in the container; nil means the image's default.
    public var workdir: String?
    /// Whether the image's entrypoint runs with the command as its arguments.
    public var entrypoint: Bool
    /// Whether the container's root file system is writable (changes are discarded at exit).
    public var writable: Bool
    /// Mounts, in the order they are made.
    public var mounts: [Mount]
    /// Variables set in the container; an empty value means "unset in the container".
    public var env: [String: String]
    /// Annotations with dotted keys and string values (they steer the site hooks).
    public var annotations: [String: String]
    /// Device requests (Sarus Suite's `devices`), present only when the EDF has the key.
    public var devices: [String]?
    /// Added by img-pull: the pulled image; img-build replaces it with the image it built (the
    /// pulled one is then `build.base`).
    public var pull: PullResult?
    /// Added by img-build: how the Containerfile was built.
    public var build: BuildResult?
    /// Added by img-squash: the image as one squashfs file.
    public var squash: SquashResult?

    public init(
        image: ImageSource? = nil, workdir: String? = nil, entrypoint: Bool = false, writable: Bool = true,
        mounts: [Mount] = [], env: [String: String] = [:], annotations: [String: String] = [:],
        devices: [String]? = nil
    ) {
        self.schemaVersion = Self.currentSchemaVersion
        self.image = image
        self.workdir = workdir
        self.entrypoint = entrypoint
        self.writable = writable
        self.mounts = mounts
        self.env = env
        self.annotations = annotations
        self.devices = devices
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion, image, containerfile, workdir, entrypoint, writable, mounts, env, annotations, devices, pull, build, squash
    }

    /// Writes every key, `null` included, so that consumers see the same keys every time.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(image, forKey: .image)
        try container.encodeIfPresent(containerfile, forKey: .containerfile)
        try container.encode(workdir, forKey: .workdir)
        try container.encode(entrypoint, forKey: .entrypoint)
        try container.encode(writable, forKey: .writable)
        try container.encode(mounts, forKey: .mounts)
        try container.encode(env, forKey: .env)
        try container.encode(annotations, forKey: .annotations)
        try container.encodeIfPresent(devices, forKey: .devices)
        try container.encodeIfPresent(pull, forKey: .pull)
        try container.encodeIfPresent(build, forKey: .build)
        try container.encodeIfPresent(squash, forKey: .squash)
    }
}

/// Where the container's root file system comes from.
public enum ImageSource: Codable, Sendable, Equatable {
    /// An image in a registry, to be pulled.
    case registry(ImageReference)
    /// A squashfs file on the local file system (absolute path).
    case local(path: String)

    enum CodingKeys: String, CodingKey {
        case path
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let path = try container.decodeIfPresent(String.self, forKey: .path) {
            self = .local(path: path)
        } else {
            self = .registry(try ImageReference(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .registry(let reference):
            try reference.encode(to: encoder)
        case .local(let path):
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(path, forKey: .path)
        }
    }
}

/// One mount of the container, in the order given by the EDF.
public struct Mount: Codable, Sendable, Equatable, Hashable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// A bind mount of a host path (recursive unless the options say otherwise).
        case bind
        /// A squashfs image file mounted read-only (EDF flag `sqsh`).
        case squashfs
        /// A fresh tmpfs (EDF source `tmpfs`).
        case tmpfs
        /// Unmount what is mounted at the destination (EDF source `umount`, as Pyxis's `x-detach`):
        /// a site's base environment can take away a mount that an earlier entry or the system made.
        case detach
    }

    /// An absolute host path, "tmpfs" or "umount".
    public var source: String
    /// An absolute path inside the container.
    public var destination: String
    public var type: Kind
    /// Mount options in the order given, without duplicates (`ro`, `private`, `size=1G`, ...).
    public var options: [String]

    public init(source: String, destination: String, type: Kind, options: [String] = []) {
        self.source = source
        self.destination = destination
        self.type = type
        self.options = options
    }
}

extension EnvironmentDocument {
    /// What makes a decoded document unusable here, key by key: another schema version, and
    /// what edf-expand would never write (relative paths, variable names with '='). Every stage
    /// that reads a document checks it, since a document may be saved, edited and handed on.
    public var problems: [(key: String, message: String)] {
        var found: [(key: String, message: String)] = []
        if schemaVersion != Self.currentSchemaVersion {
            found.append(("schemaVersion", "version \(schemaVersion); this toolbox reads documents of version \(Self.currentSchemaVersion)"))
        }
        if case .local(let path) = image, !path.hasPrefix("/") {
            found.append(("image.path", "\"\(path)\" is not an absolute path"))
        }
        if case .registry(let given) = image {
            // The reference and its parts must say the same (a part edited alone would be pulled
            // under the old name).
            do {
                let parsed = try ImageReference.parse(given.reference)
                if parsed.registry != given.registry || parsed.repository != given.repository || parsed.tag != given.tag
                    || parsed.digest != given.digest
                {
                    found.append(("image", "the reference \(given.reference) and its parts (registry, repository, tag, digest) disagree"))
                }
            } catch {
                found.append(("image.reference", error.message))
            }
        }
        if let workdir, !workdir.hasPrefix("/") {
            found.append(("workdir", "\"\(workdir)\" is not an absolute path"))
        }
        // edf-expand writes it absolute: a relative one would be taken from wherever a stage runs.
        if let containerfile, !containerfile.hasPrefix("/") {
            found.append(("containerfile", "\"\(containerfile)\" is not an absolute path"))
        }
        for name in env.keys.sorted() where name.isEmpty || name.contains("=") || name.contains("\0") {
            found.append(("env", "\"\(name)\" is not a variable name (empty, or with '=')"))
        }
        for (index, mount) in mounts.enumerated() {
            for flag in mount.options {
                if let problem = Mount.badValue(flag) { found.append(("mounts[\(index)].options", "'\(flag)': \(problem)")) }
            }
            for (one, other) in Mount.opposites where mount.options.contains(one) && mount.options.contains(other) {
                found.append(("mounts[\(index)].options", "'\(one)' and '\(other)' contradict each other"))
            }
            if let problem = Mount.conflict(mount.options) { found.append(("mounts[\(index)].options", problem)) }
            if !mount.destination.hasPrefix("/") {
                found.append(("mounts[\(index)].destination", "\"\(mount.destination)\" is not an absolute path"))
            } else if mount.destination.split(separator: "/").allSatisfy({ $0 == "." }) {
                found.append(("mounts[\(index)].destination", "\"\(mount.destination)\" is the container's root: the image is the root; mount below it"))
            }
            if mount.type == .squashfs && mount.options.contains("rw") {
                found.append(("mounts[\(index)].options", "a squashfs mount is read-only; the flag rw is not possible"))
            }
            if (mount.type == .bind || mount.type == .squashfs) && !mount.source.hasPrefix("/") {
                found.append(("mounts[\(index)].source", "\"\(mount.source)\" is not an absolute path"))
            }
        }
        if let pull { found += pull.problems }
        if let squash, !squash.path.hasPrefix("/") {
            found.append(("squash.path", "\"\(squash.path)\" is not an absolute path"))
        }
        return found
    }
}

extension Mount {
    /// Flags that cannot be given together.
    public static let opposites: [(String, String)] = [
        ("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"), ("bind", "rbind"), ("noatime", "atime"),
        ("relatime", "norelatime"),
    ]

    /// Flags that name one thing twice: two propagations, or the same option with two values.
    public static func conflict(_ options: [String]) -> String? {
        let propagations = options.filter {
            ["private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"].contains($0)
        }
        if propagations.count > 1 { return "'\(propagations[0])' and '\(propagations[1])' are two propagations" }
        // The kernel's access-time modes exclude each other.
        let times = options.filter { ["noatime", "relatime", "strictatime"].contains($0) }
        if times.count > 1 { return "'\(times[0])' and '\(times[1])' are two access-time modes" }
        var seen: [Substring: String] = [:]
        for option in options where option.contains("=") {
            let name = option.split(separator: "=", maxSplits: 1)[0]
            if let earlier = seen[name] { return "'\(earlier)' and '\(option)' give \(name) twice" }
            seen[name] = option
        }
        return nil
    }

    /// Why a flag's value is not one the mount takes (nil: fine, or a flag without a value).
    public static func badValue(_ flag: String) -> String? {
        let parts = flag.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let value = parts[1]
        let digits = value.allSatisfy(\.isASCII) && !value.isEmpty && value.allSatisfy(\.isNumber)
        switch parts[0] {
        case "size", "nr_inodes", "nr_blocks":
            var number = value
            if let last = number.last, "kKmMgGtTpPeE%".contains(last) { number = number.dropLast() }
            return !number.isEmpty && number.allSatisfy({ $0.isASCII && $0.isNumber }) ? nil : "not a size (a number, with k, m, g or % after it)"
        case "mode":
            return !value.isEmpty && value.count <= 4 && value.allSatisfy({ ("0"..."7").contains($0) }) ? nil : "not an octal mode"
        case "uid", "gid":
            return digits && UInt32(value) != nil ? nil : "not a number from 0 to 4294967295"
        case "x-create":
            return ["dir", "file", "auto"].contains(value) ? nil : "x-create is dir, file or auto"
        default:
            return nil
        }
    }
}
