#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ToolboxCore

/// When a hook runs, as it declares it: lines `# hook-run-when: CONDITION` among its first 4 KiB.
/// A hook without such lines always runs; one with them runs when any of them holds, and is
/// skipped otherwise, without starting a process (a start of bash costs milliseconds, and a site
/// installs hooks that are off for most containers). The hook still decides for itself when it
/// runs: a declaration only has to be true whenever the hook might have work to do.
///
///     # hook-run-when: annotation com.hooks.ssh.enabled     the container has the annotation
///     # hook-run-when: variable NVIDIA_VISIBLE_DEVICES      set and not empty in the hooks'
///                                                            environment or the container's
///     # hook-run-when: config cxi CXI_HOOK_DEFAULT          hooks.conf.d/cxi.conf assigns it
public struct HookConditions: Sendable, Equatable {
    public enum Condition: Sendable, Equatable {
        case annotation(String)
        case variable(String)
        case config(file: String, variable: String)
    }

    public static let directive = "# hook-run-when:"

    public var conditions: [Condition]

    /// The declarations of the hook at `path`; an unreadable file or a line that does not parse
    /// gives none (the hook then runs, and says itself what is wrong).
    public static func of(_ path: String) -> HookConditions {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return HookConditions(conditions: []) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return HookConditions(conditions: []) }
        return parse(String(decoding: buffer[0..<count], as: UTF8.self))
    }

    public static func parse(_ text: String) -> HookConditions {
        var conditions: [Condition] = []
        for line in text.split(separator: "\n") where line.hasPrefix(directive) {
            let words = line.dropFirst(directive.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            switch (words.first, words.count) {
            case ("annotation", 2): conditions.append(.annotation(words[1]))
            case ("variable", 2): conditions.append(.variable(words[1]))
            case ("config", 3) where !words[1].contains("/"): conditions.append(.config(file: words[1], variable: words[2]))
            default: return HookConditions(conditions: [])
            }
        }
        return HookConditions(conditions: conditions)
    }

    /// Whether the hook is to run.
    public func hold(
        annotations: [String: String], environment: [String: String], containerVariables: () -> [String: String]
    ) -> Bool {
        guard !conditions.isEmpty else { return true }
        for condition in conditions {
            switch condition {
            case .annotation(let key):
                if annotations[key] != nil { return true }
            case .variable(let name):
                if !(environment[name] ?? "").isEmpty || !(containerVariables()[name] ?? "").isEmpty { return true }
            case .config(let file, let variable):
                let directory = (environment["TOOLBOX_SYSCONF_PATH"] ?? "/etc/toolbox") + "/hooks.conf.d/"
                if Self.assigns(directory + file + ".conf", variable) { return true }
            }
        }
        return false
    }

    /// Whether a bash settings file assigns `variable` on a line that is not a comment.
    static func assigns(_ path: String, _ variable: String) -> Bool {
        guard let text = try? FileReader.readText(path) else { return false }
        return text.split(separator: "\n").contains { line in
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            return !trimmed.hasPrefix("#") && (trimmed.contains(variable + "=") || trimmed.contains(variable + ":="))
        }
    }
}
