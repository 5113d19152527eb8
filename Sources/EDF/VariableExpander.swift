/// Expands environment variables in EDF strings, with the reference system's syntax (spec.md
/// section 1.8): `$VAR`, `${VAR}`, `${VAR:-default}` (default used when VAR is unset or empty; it
/// may itself contain variables) and `$$` for a literal `$`. An undefined variable is an error, and
/// so is a `$` that starts none of these forms.
public struct VariableExpander: Sendable {
    public var variables: [String: String]

    public init(variables: [String: String]) {
        self.variables = variables
    }

    public enum Failure: Error, Sendable, Equatable {
        case undefined(String)
        case unterminated
        case invalidName(String)
        case loneDollar
        /// Defaults within defaults deeper than `maximumNesting`.
        case nestedTooDeep

        public var message: String {
            switch self {
            case .nestedTooDeep: "'${...:-...}' defaults nested more than \(VariableExpander.maximumNesting) deep"
            case .undefined(let name): "undefined variable '\(name)'"
            case .unterminated: "'${' without a closing '}'"
            case .invalidName(let name): "invalid variable name '\(name)' in '${...}'"
            case .loneDollar: "'$' not followed by a variable name"
            }
        }

        public var hint: String {
            switch self {
            case .undefined(let name): "export \(name) before running, or write ${\(name):-default}"
            case .unterminated: "close the reference: ${NAME}"
            case .invalidName: "names are letters, digits and '_', not starting with a digit; ${NAME:-default} gives a default"
            case .loneDollar: "write $$ for a literal '$'"
            case .nestedTooDeep: "give the default a value of its own, or fewer levels of ${A:-${B:-...}}"
            }
        }
    }

    /// How deep `${A:-${B:-...}}` may nest (each level reads the rest of the text again).
    public static let maximumNesting = 32

    public func expand(_ text: String) throws(Failure) -> String {
        try expand(text, nesting: 0)
    }

    func expand(_ text: String, nesting: Int) throws(Failure) -> String {
        guard nesting <= Self.maximumNesting else { throw .nestedTooDeep }
        var output = ""
        let chars = Array(text.unicodeScalars)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            guard c == "$" else {
                output.unicodeScalars.append(c)
                i += 1
                continue
            }
            guard i + 1 < chars.count else { throw .loneDollar }
            let next = chars[i + 1]
            if next == "$" {
                output += "$"
                i += 2
            } else if next == "{" {
                // Find the matching "}", allowing nested ${...} in a default.
                var depth = 1
                var j = i + 2
                while j < chars.count {
                    // $$ is a literal $: a "{" after it opens nothing.
                    if chars[j] == "$" && j + 1 < chars.count && chars[j + 1] == "$" {
                        j += 2
                        continue
                    }
                    if chars[j] == "$" && j + 1 < chars.count && chars[j + 1] == "{" {
                        depth += 1
                        j += 2
                        continue
                    }
                    if chars[j] == "}" {
                        depth -= 1
                        if depth == 0 { break }
                    }
                    j += 1
                }
                guard j < chars.count else { throw .unterminated }
                var body = ""
                body.unicodeScalars.append(contentsOf: chars[(i + 2)..<j])
                output += try substitute(body, nesting: nesting)
                i = j + 1
            } else if Self.isNameStart(next) {
                var j = i + 1
                while j < chars.count && Self.isNameCharacter(chars[j]) { j += 1 }
                var name = ""
                name.unicodeScalars.append(contentsOf: chars[(i + 1)..<j])
                guard let value = variables[name] else { throw .undefined(name) }
                output += value
                i = j
            } else {
                throw .loneDollar
            }
        }
        return output
    }

    func substitute(_ body: String, nesting: Int) throws(Failure) -> String {
        var name = body
        var fallback: String?
        if let range = body.range(of: ":-") {
            name = String(body[..<range.lowerBound])
            fallback = String(body[range.upperBound...])
        }
        guard let first = name.unicodeScalars.first, Self.isNameStart(first),
            name.unicodeScalars.allSatisfy(Self.isNameCharacter)
        else { throw .invalidName(name) }
        if let fallback {
            if let value = variables[name], !value.isEmpty { return value }
            return try expand(fallback, nesting: nesting + 1)
        }
        guard let value = variables[name] else { throw .undefined(name) }
        return value
    }

    static func isNameStart(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if v >= 0x61 && v <= 0x7A { return true }  // a-z
        if v >= 0x41 && v <= 0x5A { return true }  // A-Z
        return v == 0x5F  // _
    }

    static func isNameCharacter(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        return isNameStart(c) || (v >= 0x30 && v <= 0x39)
    }

    /// Splits on `separator` outside `${...}`, so that `${VAR:-x}:/dst` splits into two parts.
    public static func split(_ text: String, on separator: Character) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        // A "$" that starts a reference (not the second of "$$", a literal "$").
        var dollar = false
        for c in text {
            if c == "{" && dollar { depth += 1 }
            if c == "}" && depth > 0 { depth -= 1 }
            if c == separator && depth == 0 {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
            dollar = c == "$" ? !dollar : false
        }
        parts.append(current)
        return parts
    }
}

extension VariableExpander.Failure {
    /// "MESSAGE in "VALUE"", the value cut to 80 characters (a value may be long).
    public func message(in value: String) -> String {
        let shown = value.count <= 80 ? value : String(value.prefix(77)) + "..."
        return "\(message) in \"\(shown)\""
    }
}
