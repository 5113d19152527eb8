import ArgumentParser
import ToolSupport
import EDF
import ToolboxCore

/// `edf-merge`: resolves environment references and their base_environment chains into one EDF.
public struct EDFMerge: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "edf-merge",
        abstract: "Merge environment definition files (EDF) and their base_environment chains into one EDF.",
        discussion: """
            Each REFERENCE is an absolute path, a path starting with ./ or ../ (relative to the \
            current directory), or a NAME looked up as <dir>/NAME.toml in EDF_PATH (colon-separated, \
            default $HOME/.edf), then in EDF_SYSTEM_PATH (default /etc/edf). Variables in references \
            and base_environment entries are expanded first. Several references merge left to right, \
            like the base_environment list of an empty file.

            Merging: parents first (in list order), then the child. image, workdir, entrypoint and \
            writable are replaced when set; env and annotations merge key by key, later wins; mounts \
            and devices concatenate, parents first, exact duplicates dropped. At most 10 levels.

            Output (stdout): the merged EDF as TOML, itself a valid EDF without base_environment \
            (--json: the same as JSON, for edf-expand). Variables stay unexpanded. Unknown keys are \
            kept and warned about on stderr.

            Exit status:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .ioError]))
            """,
        version: toolboxVersion
    )

    @Argument(help: "Environments to merge: NAME, ./FILE.toml or /path/FILE.toml.", completion: .file(extensions: ["toml"]))
    var references: [String]

    @Flag(help: "Print the merged EDF as JSON instead of TOML.")
    var json = false

    @Flag(help: "Print, for every field, the file (and line) that set it, instead of the EDF.")
    var explain = false

    public init() {}

    public func validate() throws {
        if references.isEmpty { throw ValidationError("give at least one environment (NAME, ./FILE.toml or /path/FILE.toml)") }
    }

    public func run() throws {
        let context = ProcessContext.current()
        var merger = Merger.forProcess(environment: context.environment, currentDirectory: context.currentDirectory)
        let merged = merger.merge(references: references)
        try Reporter(tool: Self.configuration.commandName ?? "edf-merge").report(merger.diagnostics)

        let text: String
        if explain {
            let rows = merged.provenance
            if json {
                var table: [String: EDFValue] = [:]
                for row in rows {
                    var entry: [String: EDFValue] = ["file": .string(row.location.file), "value": .string(row.value)]
                    if let line = row.location.line { entry["line"] = .integer(line) }
                    table[row.field] = .table(entry)
                }
                text = try Output.json(EDFValue.table(table))
            } else {
                let width = rows.map { $0.field.count }.max() ?? 0
                text = rows.map { row in
                    let place = row.location.file + (row.location.line.map { ":\($0)" } ?? "")
                    return row.field + String(repeating: " ", count: width - row.field.count + 2) + place
                }.map { $0 + "\n" }.joined()
            }
        } else if json {
            if let (key, value) = merged.jsonValue.nonFiniteNumber() {
                throw Diagnostic(
                    kind: .invalid, key: key, message: "\(value) cannot be written as JSON (it has no such number)",
                    hint: "give a finite number in the EDF, or print TOML (leave out --json)")
            }
            text = try Output.json(merged.jsonValue)
        } else {
            text = merged.tomlText
        }
        try StandardStreams.writeOutput(text)
    }
}
