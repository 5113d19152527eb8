import ToolSupport
import ToolboxCore

/// What the runtime commands read from their arguments, in one place.
enum Inputs {
    /// The text of an input argument: a file (relative to the current directory) or `-` for
    /// stdin; with the name messages use for it (the argument as given, `<stdin>`).
    static func read(_ argument: String, context: ProcessContext) throws(Diagnostic) -> (text: String, name: String) {
        if argument == "-" { return (try FileReader.readText("-", displayName: "<stdin>"), "<stdin>") }
        return (try FileReader.readText(Path.absolute(argument, relativeTo: context.currentDirectory)), argument)
    }

    /// A container root file system given as an argument: absolute, and a directory.
    static func rootDirectory(_ argument: String, context: ProcessContext) throws(Diagnostic) -> String {
        // Not the current directory (which can be the host's /).
        guard !argument.isEmpty else { throw Diagnostic(kind: .usage, message: "the root file system is an empty path", hint: "give the container's root directory") }
        let root = Path.absolute(argument, relativeTo: context.currentDirectory)
        guard FileReader.kind(of: root) == .directory else {
            throw Diagnostic(kind: .notFound, message: "root file system \(root) is not a directory")
        }
        return root
    }

    /// `NAME=VALUE` given to `option` (--env, --annotation).
    static func split(_ text: String, option: String) throws(Diagnostic) -> (String, String) {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw Diagnostic(
                kind: .usage, message: "\(option) \(text): write NAME=VALUE",
                hint: option == "--annotation" ? "e.g. --annotation com.hooks.ssh.enabled=true" : "e.g. \(option) OMP_NUM_THREADS=8 (an empty VALUE unsets NAME)")
        }
        return (String(text[..<equals]), String(text[text.index(after: equals)...]))
    }
}
