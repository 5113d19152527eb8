/// What hook-run prints on stdout (and hands back to ns-enter): the hooks that ran and what they
/// asked for, mounts (lines they appended to `$ENROOT_MOUNTS`) and variables (lines appended to
/// `$ENROOT_ENVIRON`).
public struct HookReport: Codable, Sendable, Equatable {
    public var rootfs: String
    /// Every hook, in order (those not started are marked `skipped`).
    public var hooks: [Hook]
    /// The mounts the hooks asked for, in order; `performed` when hook-run made them (`--apply`).
    public var mounts: [FstabEntry]
    /// Variables for the container's environment, in the order given (a later line wins).
    public var env: [Variable]
    /// The processes the hooks started inside the container (lines of `$TOOLBOX_HOOK_PIDS`):
    /// stopped when the container ends.
    public var services: [Int32]
    /// hook-run refreshed the image's linker cache once after the hooks (library hooks ask for
    /// it through HOOK_RUN_DEFERRED instead of each running ldconfig).
    public var linkerCacheRefreshed: Bool?

    public init(rootfs: String, hooks: [Hook] = [], mounts: [FstabEntry] = [], env: [Variable] = [], services: [Int32] = []) {
        self.rootfs = rootfs
        self.hooks = hooks
        self.mounts = mounts
        self.env = env
        self.services = services
    }

    /// Every key (`linkerCacheRefreshed` and each hook's `skipped` false when not so).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(rootfs, forKey: .rootfs)
        try container.encode(hooks, forKey: .hooks)
        try container.encode(mounts, forKey: .mounts)
        try container.encode(env, forKey: .env)
        try container.encode(services, forKey: .services)
        try container.encode(linkerCacheRefreshed ?? false, forKey: .linkerCacheRefreshed)
    }

    public struct Hook: Codable, Sendable, Equatable {
        public var path: String
        public var status: Int32
        public var milliseconds: Int
        /// true when the hook's `# hook-run-when:` declarations all failed: it was not started.
        public var skipped: Bool?

        public init(path: String, status: Int32, milliseconds: Int, skipped: Bool? = nil) {
            self.path = path
            self.status = status
            self.milliseconds = milliseconds
            self.skipped = skipped
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(path, forKey: .path)
            try container.encode(status, forKey: .status)
            try container.encode(milliseconds, forKey: .milliseconds)
            try container.encode(skipped ?? false, forKey: .skipped)
        }
    }

    public struct Variable: Codable, Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }
}

/// One line of an enroot fstab file (`SOURCE TARGET TYPE OPTIONS [FREQ [PASSNO]]`), the dialect
/// hooks write to `$ENROOT_MOUNTS`; TARGET is inside the container's root.
public struct FstabEntry: Codable, Sendable, Equatable {
    public var source: String
    public var target: String
    public var type: String
    public var options: [String]
    /// Where it came from (`file:line`), for messages.
    public var origin: String
    public var performed: Bool

    public init(source: String, target: String, type: String, options: [String], origin: String, performed: Bool = false) {
        self.source = source
        self.target = target
        self.type = type
        self.options = options
        self.origin = origin
        self.performed = performed
    }
}
