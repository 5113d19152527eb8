import ArgumentParser
import FoundationEssentials
import Glibc
import ToolboxCore

/// The toolbox's version, which every command prints with `--version` (one number for the whole
/// set: the commands are released together and talk through documents of the same version).
public let toolboxVersion = "0.9.0"

/// A command of the toolbox: errors go to stderr as `<tool>: error: ...` and the process exits with
/// a status from `ExitStatus`, never with a crash.
public protocol Tool: ParsableCommand {}

/// Thrown by a command after it has reported its diagnostics; carries the exit status.
public struct ToolExit: Error {
    public var status: ExitStatus

    public init(status: ExitStatus) { self.status = status }
}

extension Tool {
    /// The entry point used by every `main.swift`.
    public static func runAsTool(arguments: [String]? = nil) -> Never {
        let name = configuration.commandName ?? String(describing: Self.self)
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(ExitStatus.success.rawValue)
        } catch {
            fail(error, name: name)
        }
    }

    /// Reports an error as runAsTool does (`<tool>: error: ...` and its exit status) and exits:
    /// for a command's fast path, which runs without swift-argument-parser.
    public static func fail(_ error: any Error, name: String) -> Never {
        do {
            throw error
        } catch let failure as ToolExit {
            Glibc.exit(failure.status.rawValue)
        } catch let diagnostic as Diagnostic {
            StandardStreams.writeError(diagnostic.rendered(tool: name))
            Glibc.exit(ExitStatus(diagnostic.kind).rawValue)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                // --help, --version, --generate-completion-script: data for stdout.
                StandardStreams.write(message.hasSuffix("\n") ? message : message + "\n", to: STDOUT_FILENO)
                Glibc.exit(0)
            }
            var text = message
            if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
            StandardStreams.writeError("\(name): error: \(text)\n")
            Glibc.exit(code == .validationFailure ? ExitStatus.usage.rawValue : code.rawValue)
        }
    }
}

/// Writes diagnostics to stderr and decides whether the run failed.
public struct Reporter {
    public var tool: String

    public init(tool: String) { self.tool = tool }

    /// Prints every diagnostic; throws `ToolExit` with the status of the first error, if any.
    public func report(_ diagnostics: [Diagnostic]) throws {
        for diagnostic in diagnostics {
            StandardStreams.writeError(diagnostic.rendered(tool: tool))
        }
        let errors = diagnostics.filter { $0.severity == .error }
        if !errors.isEmpty { throw ToolExit(status: ExitStatus(for: errors)) }
    }
}

public enum Output {
    /// JSON for stdout: sorted keys, indented, no escaped slashes, ending with a newline.
    public static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return (String(data: data, encoding: .utf8) ?? "") + "\n"
    }
}

/// The environment and working directory of this process, read once.
public struct ProcessContext {
    public var environment: [String: String]
    public var currentDirectory: String

    public init(environment: [String: String], currentDirectory: String) {
        self.environment = environment
        self.currentDirectory = currentDirectory
    }

    public static func current() -> ProcessContext {
        ProcessContext(environment: ProcessInfo.processInfo.environment, currentDirectory: FileReader.currentDirectory())
    }
}
