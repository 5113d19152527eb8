import ArgumentParser
import Glibc
import ToolSupport
import ToolboxCore

extension NamespaceEnter {
    /// ns-enter starts once per task of a job step, and swift-argument-parser's reflection-based
    /// parsing (and its property wrappers, even unparsed) costs about a millisecond of that start. The usual command lines (options from
    /// the list below, then `--` and the command) are parsed here directly; anything else
    /// (--help, an unknown or malformed option, a value that looks like an option) goes to
    /// swift-argument-parser, which also produces the help, completions and man page. A test
    /// checks that both parsers agree.
    static func parseQuickly(_ arguments: [String]) -> Options? {
        var result = Options()
        var index = 0
        while index < arguments.count {
            var name = arguments[index]
            var inline: String?
            index += 1
            if name == "--" {
                result.command = Array(arguments[index...])
                break
            }
            if name.hasPrefix("--"), let equals = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            /// The option's value: inline, or the next argument unless it looks like an option.
            func value() -> String? {
                if let inline { return inline }
                guard index < arguments.count, !arguments[index].hasPrefix("-") else { return nil }
                index += 1
                return arguments[index - 1]
            }
            func flag(_ set: () -> Void) -> Bool {
                guard inline == nil else { return false }
                set()
                return true
            }
            switch name {
            case "-e", "--environment":
                guard let text = value() else { return nil }
                result.environment = text
            case "--environment-variable":
                guard let text = value() else { return nil }
                result.environmentVariable = text
            case "--image":
                guard let text = value() else { return nil }
                result.image = text
            case "--mount":
                guard let text = value() else { return nil }
                result.mounts.append(text)
            case "--env":
                guard let text = value() else { return nil }
                result.variables.append(text)
            case "--workdir":
                guard let text = value() else { return nil }
                result.workdir = text
            case "--annotation":
                guard let text = value() else { return nil }
                result.annotations.append(text)
            case "--name":
                guard let text = value() else { return nil }
                result.name = text
            case "--join":
                guard let text = value(), let pid = Int32(text) else { return nil }
                result.join = pid
            case "--hook-timeout":
                guard let text = value(), let seconds = Double(text) else { return nil }
                result.hookTimeout = seconds
            case "--writable": guard flag({ result.writable = true }) else { return nil }
            case "--no-writable": guard flag({ result.writable = false }) else { return nil }
            case "--entrypoint": guard flag({ result.entrypoint = true }) else { return nil }
            case "--no-entrypoint": guard flag({ result.entrypoint = false }) else { return nil }
            case "--root": guard flag({ result.root = true }) else { return nil }
            case "--no-hooks": guard flag({ result.noHooks = true }) else { return nil }
            default: return nil
            }
        }
        guard (try? result.validate()) != nil else { return nil }
        return result
    }

    /// The entry point of ns-enter's main.swift: the fast path, else swift-argument-parser.
    public static func runQuickly() -> Never {
        if let options = parseQuickly(Array(CommandLine.arguments.dropFirst())) {
            do {
                try options.run()
                Glibc.exit(ExitStatus.success.rawValue)
            } catch {
                fail(error, name: "ns-enter")
            }
        }
        runAsTool()
    }
}
