import ToolboxCore

/// Where a value was set: the file and, when known, the line.
public struct SourceLocation: Sendable, Equatable, Hashable {
    public var file: String
    public var line: Int?
    /// For an array's item: its index in that file's array (the merged array numbers differently).
    public var element: Int?

    public init(file: String, line: Int? = nil, element: Int? = nil) {
        self.file = file
        self.line = line
        self.element = element
    }
}

/// A value together with the place that set it.
public struct Located<Value: Sendable & Equatable>: Sendable, Equatable {
    public var value: Value
    public var location: SourceLocation

    public init(_ value: Value, at location: SourceLocation) {
        self.value = value
        self.location = location
    }
}

/// An Environment Definition File with its types checked, before variable expansion: one file as
/// written, or several merged by `base_environment`. Every value remembers where it was set, for
/// `edf-merge --explain` and for error messages that name the right file and line.
public struct EnvironmentDefinition: Sendable, Equatable {
    /// The parents named by this file (nil once merged).
    public var baseEnvironment: [Located<String>]?
    public var image: Located<String>?
    /// A Containerfile (Dockerfile) to build on top of `image` (img-build).
    public var containerfile: Located<String>?
    public var workdir: Located<String>?
    public var entrypoint: Located<Bool>?
    public var writable: Located<Bool>?
    public var mounts: [Located<String>]?
    public var devices: [Located<String>]?
    public var env: [String: Located<String>]?
    /// Flattened to dotted keys; values are strings.
    public var annotations: [String: Located<String>]?
    /// Top-level keys this toolbox does not know, kept as they were (and warned about).
    public var unknown: [String: Located<EDFValue>]

    public init() {
        unknown = [:]
    }

    /// The keys an EDF may have, in the order they are written out.
    public static let knownKeys = [
        "base_environment", "image", "containerfile", "workdir", "entrypoint", "writable", "mounts", "devices", "env", "annotations",
    ]

    /// Applies `other` on top of this definition, as a child overrides its parents: scalars are
    /// replaced when `other` sets them, `env` and `annotations` merge key by key (other wins),
    /// `mounts` and `devices` concatenate (self first) without exact duplicates.
    public mutating func apply(_ other: EnvironmentDefinition) {
        if let v = other.image { image = v }
        if let v = other.containerfile { containerfile = v }
        if let v = other.workdir { workdir = v }
        if let v = other.entrypoint { entrypoint = v }
        if let v = other.writable { writable = v }
        if let v = other.mounts { mounts = Self.concatenate(mounts, v) }
        if let v = other.devices { devices = Self.concatenate(devices, v) }
        if let v = other.env { env = (env ?? [:]).merging(v) { _, new in new } }
        if let v = other.annotations { annotations = (annotations ?? [:]).merging(v) { _, new in new } }
        unknown.merge(other.unknown) { _, new in new }
    }

    static func concatenate(_ first: [Located<String>]?, _ second: [Located<String>]) -> [Located<String>] {
        var result: [Located<String>] = []
        var seen: Set<String> = []
        for item in (first ?? []) + second where seen.insert(item.value).inserted {
            result.append(item)
        }
        return result
    }

    /// Which file set each field, for `--explain`: field path (`image`, `env.FOO`, `mounts[0]`) and
    /// location, in output order.
    public var provenance: [(field: String, value: String, location: SourceLocation)] {
        var rows: [(String, String, SourceLocation)] = []
        if let v = image { rows.append(("image", v.value, v.location)) }
        if let v = containerfile { rows.append(("containerfile", v.value, v.location)) }
        if let v = workdir { rows.append(("workdir", v.value, v.location)) }
        if let v = entrypoint { rows.append(("entrypoint", String(v.value), v.location)) }
        if let v = writable { rows.append(("writable", String(v.value), v.location)) }
        for (i, v) in (mounts ?? []).enumerated() { rows.append(("mounts[\(i)]", v.value, v.location)) }
        for (i, v) in (devices ?? []).enumerated() { rows.append(("devices[\(i)]", v.value, v.location)) }
        for key in unknown.keys.sorted() {
            if let v = unknown[key] { rows.append((key, v.value.excerpt, v.location)) }
        }
        for key in (env ?? [:]).keys.sorted() {
            if let v = env?[key] { rows.append(("env.\(key)", v.value, v.location)) }
        }
        for key in (annotations ?? [:]).keys.sorted() {
            if let v = annotations?[key] { rows.append(("annotations.\(key)", v.value, v.location)) }
        }
        return rows
    }
}
