import ArgumentParser
import ToolSupport
import EDF
import ToolboxCore
import ToolboxModel

/// `edf-expand`: renders one EDF into the environment document that every later stage reads.
public struct EDFExpand: Tool {
    public static let configuration = CommandConfiguration(
        commandName: "edf-expand",
        abstract: "Render an environment definition file (EDF) into the environment document (JSON).",
        discussion: """
            Reads one EDF: the FILE argument, or stdin when FILE is - or missing. FILE is a path \
            (absolute, or starting with ./ or ../, or any name ending in .toml or .json: relative to \
            the current directory), else a NAME looked up as NAME.toml in EDF_PATH as edf-merge \
            does. The input is TOML, or the JSON that edf-merge --json prints (recognised by its \
            leading {, whatever the file's name). A base_environment is resolved as edf-merge does.

            Expands $VAR, ${VAR}, ${VAR:-default} and $$ (a literal $) in every string value from \
            this process's environment; an undefined variable is an error. Parses the image \
            reference, makes ./ paths absolute, checks that mount sources exist, applies defaults \
            (entrypoint false, writable true) and reports every error of the input in one run.

            Output (stdout): one JSON object with the keys schemaVersion, image (object or null), \
            workdir (string or null), entrypoint, writable, mounts, env, annotations, and devices \
            and containerfile when the EDF has them. --check prints nothing and only validates.

            Exit status:
            \(ExitStatus.helpTable([.success, .usage, .invalidInput, .noInput, .ioError]))
            """,
        version: toolboxVersion
    )

    @Argument(help: "The EDF to render (- or nothing: stdin).", completion: .file(extensions: ["toml", "json"]))
    var file: String?

    @Flag(help: "Only validate: print nothing on success, every error otherwise.")
    var check = false

    public init() {}

    public func run() throws {
        let tool = Self.configuration.commandName ?? "edf-expand"
        let context = ProcessContext.current()
        var merger = Merger.forProcess(environment: context.environment, currentDirectory: context.currentDirectory)
        let reporter = Reporter(tool: tool)

        var diagnostics: [Diagnostic] = []
        var merged: EnvironmentDefinition?
        // Variables in FILE are expanded, as edf-merge expands its references ($SCRATCH/env.toml).
        var file = self.file
        if let given = file, given.contains("$") {
            do {
                file = try VariableExpander(variables: context.environment).expand(given)
            } catch {
                try reporter.report([Diagnostic(message: error.message(in: given), hint: error.hint)])
            }
        }
        if let file, file != "-", case .name(let name) = SearchPath.Reference(file), !name.hasSuffix(".toml"),
            !name.hasSuffix(".json")
        {
            merged = merger.merge(references: [name])
        } else {
            let path = (file == nil || file == "-") ? "-" : Path.absolute(file ?? "-", relativeTo: context.currentDirectory)
            if path != "-" && !path.hasSuffix(".toml") && !path.hasSuffix(".json") {
                try reporter.report([SearchPath.notTOML(path)])
            }
            let display = path == "-" ? "<stdin>" : path
            let text = try FileReader.readText(path, displayName: display)
            // Unknown keys are warned about in JSON too (a hand-written `"mount"` must not vanish
            // silently), also when edf-merge --json, which keeps them, warned already.
            let format = EnvironmentDefinition.Format.detect(text)
            let (parsed, found) = EnvironmentDefinition.parse(text, file: display, format: format, warnUnknownKeys: true)
            diagnostics += found
            if let parsed { merged = merger.resolveBases(of: parsed, file: display) }
        }
        diagnostics += merger.diagnostics
        var document: EnvironmentDocument?
        if let merged {
            let renderer = Renderer(variables: context.environment, currentDirectory: context.currentDirectory)
            let (rendered, problems) = renderer.render(merged)
            diagnostics += problems
            document = rendered
        }
        try reporter.report(diagnostics)
        guard let document else { return }
        if !check { try StandardStreams.writeOutput(try Output.json(document)) }
    }
}
