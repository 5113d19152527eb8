import ToolboxCore

/// Resolves environment references and `base_environment` inheritance into one definition
/// (spec.md sections 1.3 and 1.9): parents in list order, then the child; at most `maximumDepth`
/// files deep; cycles reported with the chain that closes them.
public struct Merger: Sendable {
    public var searchPath: SearchPath
    /// Variables for expanding `base_environment` entries before lookup.
    public var expander: VariableExpander
    public var currentDirectory: String
    public var maximumDepth = 10
    public var warnUnknownKeys = true
    /// Every error and warning found so far, in the order found.
    public private(set) var diagnostics: [Diagnostic] = []
    /// Each file resolved so far (its bases merged in) and the height of its tree of bases (1: no
    /// bases): a parent listed again, or shared by several files, is read and merged once (ten
    /// files each naming one parent ten times would otherwise be read 10^depth times).
    private var resolved: [String: (definition: EnvironmentDefinition?, height: Int)] = [:]
    private var depthReported = false

    public init(searchPath: SearchPath, variables: [String: String], currentDirectory: String) {
        self.searchPath = searchPath
        self.expander = VariableExpander(variables: variables)
        self.currentDirectory = currentDirectory
    }

    /// The merger for this process: search path and variables from its environment.
    public static func forProcess(environment: [String: String], currentDirectory: String) -> Merger {
        let (searchPath, warnings) = SearchPath.from(environment: environment)
        var merger = Merger(searchPath: searchPath, variables: environment, currentDirectory: currentDirectory)
        merger.diagnostics = warnings
        return merger
    }

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

    /// Merges references left to right, as the `base_environment` list of an empty file.
    public mutating func merge(references: [String]) -> EnvironmentDefinition {
        var result = EnvironmentDefinition()
        for reference in references {
            if let loaded = load(reference: nil, raw: reference, chain: []) { result.apply(loaded) }
        }
        return result
    }

    /// Resolves the `base_environment` of an already parsed definition (read from `file`).
    public mutating func resolveBases(of definition: EnvironmentDefinition, file: String) -> EnvironmentDefinition {
        inherit(definition, file: file, chain: [file]).definition
    }

    /// Reads and parses one file; nil (with a diagnostic) when it cannot be read or does not parse.
    public mutating func parseFile(_ path: String, chain: [String] = []) -> EnvironmentDefinition? {
        let text: String
        do {
            text = try FileReader.readText(path, regularOnly: true)
        } catch {
            var diagnostic = error
            diagnostic.chain = Self.names(chain + [path])
            diagnostics.append(diagnostic)
            return nil
        }
        let (definition, found) = EnvironmentDefinition.parse(text, file: path, warnUnknownKeys: warnUnknownKeys)
        diagnostics += found.map { diagnostic in
            var d = diagnostic
            d.chain = Self.names(chain + [path])
            return d
        }
        return definition
    }

    mutating func load(reference: Located<String>?, raw: String, chain: [String]) -> EnvironmentDefinition? {
        loadTree(reference: reference, raw: raw, chain: chain).definition
    }

    /// The file a reference names, its bases merged in, and the height of its tree of bases.
    mutating func loadTree(reference: Located<String>?, raw: String, chain: [String]) -> (definition: EnvironmentDefinition?, height: Int) {
        let parent = chain.last
        func fail(_ d: Diagnostic) {
            var d = d
            d.file = parent
            d.line = reference?.location.line
            d.key = parent == nil ? nil : "base_environment"
            d.chain = Self.names(chain)
            // A parent listed several times fails the same way each time: said once.
            if !diagnostics.contains(d) { diagnostics.append(d) }
        }
        let expanded: String
        do {
            expanded = try expander.expand(raw)
        } catch {
            fail(Diagnostic(message: error.message(in: raw), hint: error.hint))
            return (nil, 1)
        }
        let path: String
        switch searchPath.resolve(expanded, currentDirectory: currentDirectory) {
        case .success(let p): path = p
        case .failure(let d):
            fail(d)
            return (nil, 1)
        }
        if chain.contains(path) {
            fail(
                Diagnostic(
                    message: "cycle: \(Self.names(chain + [path]).joined(separator: " -> "))",
                    hint: "remove one of these base_environment entries"))
            diagnostics[diagnostics.count - 1].chain = []
            return (nil, 1)
        }
        // Resolved before, in another place of the tree: the same result, when its tree of bases
        // fits below this place (else the depth error is found again, where it applies).
        // One chain that is too deep is enough to say: every parent listed on it, and every
        // level below, would be found too deep again.
        func tooDeep(_ what: String) {
            guard !depthReported else { return }
            depthReported = true
            fail(
                Diagnostic(
                    message: "base_environment nesting is deeper than \(maximumDepth) levels (\(what))",
                    hint: "flatten the chain of base environments to at most \(maximumDepth) files"))
        }
        if let known = resolved[path] {
            if chain.count + known.height <= maximumDepth { return known }
            tooDeep("\(path), \(known.height) levels with its bases, at level \(chain.count + 1)")
            return (nil, known.height)
        }
        if chain.count >= maximumDepth {
            tooDeep(path)
            return (nil, 1)
        }
        if FileReader.kind(of: path) == .missing {
            let what = parent == nil ? "environment file" : "base environment"
            fail(Diagnostic(kind: .notFound, message: "\(what) \(path) does not exist", hint: "check the path; relative paths are taken from the current directory (\(currentDirectory))"))
            return (nil, 1)
        }
        guard let definition = parseFile(path, chain: chain) else {
            resolved[path] = (nil, 1)
            return (nil, 1)
        }
        let tree = inherit(definition, file: path, chain: chain + [path])
        let result = (definition: Optional(tree.definition), height: tree.height)
        resolved[path] = result
        return result
    }

    mutating func inherit(_ definition: EnvironmentDefinition, file: String, chain: [String]) -> (definition: EnvironmentDefinition, height: Int) {
        guard let bases = definition.baseEnvironment else { return (definition, 1) }
        var result = EnvironmentDefinition()
        var height = 1
        for base in bases {
            let tree = loadTree(reference: base, raw: base.value, chain: chain)
            height = max(height, tree.height + 1)
            if let parent = tree.definition { result.apply(parent) }
        }
        var child = definition
        child.baseEnvironment = nil
        result.apply(child)
        return (result, height)
    }

    /// Chains are shown with file names only, as `a.toml -> b.toml -> a.toml`.
    static func names(_ chain: [String]) -> [String] {
        chain.map(Path.baseName)
    }
}
