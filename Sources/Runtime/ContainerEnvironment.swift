/// The container's variables as changes to the caller's environment: what the image, the EDF and
/// the hooks set or unset, in that order (a later source wins). ns-enter applies it to its own
/// environment; a task that joins a running container applies the same changes to its own, so
/// that per-task variables (SLURM_PROCID, ...) stay the task's.
public struct ContainerEnvironment: Sendable, Equatable {
    /// Variables set, by name.
    public var set: [String: String] = [:]
    /// Variables removed from the caller's environment.
    public var unset: [String] = []
    /// The initial working directory inside the container.
    public var workdir: String = "/"
    /// Pyxis's PyTorch remap (annotation `com.pyxis.pytorch_remap_vars`): each task's RANK and
    /// LOCAL_RANK from its SLURM_PROCID and SLURM_LOCALID, when the container has PYTORCH_VERSION.
    public var remapPyTorchRanks = false

    /// Host variables that describe the host's file system, not the image's: never passed in
    /// (the locale variables name locales the image may not have: Pyxis drops them too, spec 1.6).
    /// NS_ENTER_CACHE (a host directory the srun wrapper hands the tasks) and its limit are for
    /// ns-enter itself.
    public static let hostOnly: Set<String> = ["PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "LANG", "LANGUAGE", "LC_ALL", "NS_ENTER_CACHE", "NS_ENTER_CACHE_LIMIT"]
    /// PATH when neither the image nor the EDF sets one.
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    public init() {}

    /// Image Env (`KEY=VALUE` lines), then the EDF's variables (an empty value unsets); what hooks
    /// ask for is assigned afterwards.
    public init(imageEnv: [String], edf: [String: String]) {
        for line in imageEnv {
            guard let equals = line.firstIndex(of: "="), equals != line.startIndex else { continue }
            assign(String(line[..<equals]), String(line[line.index(after: equals)...]))
        }
        for name in edf.keys.sorted() {
            let value = edf[name] ?? ""
            if value.isEmpty { remove(name) } else { assign(name, value) }
        }
    }

    public mutating func assign(_ name: String, _ value: String) {
        set[name] = value
        unset.removeAll { $0 == name }
    }

    public mutating func remove(_ name: String) {
        set[name] = nil
        if !unset.contains(name) { unset.append(name) }
    }

    /// The environment of a process in the container, from the caller's.
    public func applied(to host: [String: String]) -> [String: String] {
        var result = host.filter { !Self.hostOnly.contains($0.key) }
        for (name, value) in set { result[name] = value }
        for name in unset { result[name] = nil }
        if result["PATH"] == nil && !unset.contains("PATH") { result["PATH"] = Self.defaultPath }
        if remapPyTorchRanks, result["PYTORCH_VERSION"] != nil {
            if let rank = host["SLURM_PROCID"] { result["RANK"] = rank }
            if let local = host["SLURM_LOCALID"] { result["LOCAL_RANK"] = local }
        }
        return result
    }

    /// Takes on what the image's entrypoint changed (`captured`, its environment when it stopped,
    /// against `given`, what it was started with), as Pyxis gives the tasks the environment of
    /// the container's first process. The shell's own bookkeeping (PWD, SHLVL, _) is left out.
    public mutating func adopt(_ captured: [String: String], given: [String: String], keeping kept: Set<String> = []) {
        let ignored = kept.union(["PWD", "OLDPWD", "SHLVL", "_"])
        for (name, value) in captured where given[name] != value && !ignored.contains(name) { assign(name, value) }
        for name in given.keys where captured[name] == nil && !ignored.contains(name) { remove(name) }
    }
}
