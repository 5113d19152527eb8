import Foundation
import TOMLKit
import ToolboxCore

extension EnvironmentDefinition {
    /// The formats an EDF may come in: TOML as users write it, or the JSON that `edf-merge --json`
    /// prints.
    public enum Format: Sendable {
        case toml, json

        /// JSON when the first non-blank character is `{` (which a TOML document cannot start with).
        public static func detect(_ text: String) -> Format {
            text.first(where: { !$0.isWhitespace }) == "{" ? .json : .toml
        }
    }

    /// A NUL character in an EDF, raw or as a TOML escape (`\u0000`, `\U00000000`): TOML forbids the
    /// first; the second would cut a path, a name or a value short (the TOML library hands strings
    /// over as C strings) or crash it in a key. No field can hold one.
    static func nulCharacter(in text: String, file: String) -> Diagnostic? {
        let bytes = Array(text.utf8)
        var line = 1
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") { line += 1 }
            var found = byte == 0
            if byte == UInt8(ascii: "\\") {
                // An escape only when the backslashes before it are an even number (\\u0000 is a
                // backslash and "u0000").
                var run = 0
                while index + run < bytes.count && bytes[index + run] == UInt8(ascii: "\\") { run += 1 }
                let next = index + run
                if run % 2 == 1, next < bytes.count {
                    let digits = bytes[next] == UInt8(ascii: "u") ? 4 : bytes[next] == UInt8(ascii: "U") ? 8 : 0
                    if digits > 0, next + digits < bytes.count,
                        bytes[(next + 1)...(next + digits)].allSatisfy({ $0 == UInt8(ascii: "0") })
                    {
                        found = true
                    }
                }
                if !found {
                    index += run
                    continue
                }
            }
            if found { return nulCharacter(file: file, line: line, key: nil) }
            index += 1
        }
        return nil
    }

    /// A NUL character at `line` (under `key`, when known), in TOML or in JSON.
    static func nulCharacter(file: String, line: Int, key: String?) -> Diagnostic {
        Diagnostic(
            kind: .syntax, file: file, line: line, key: key, message: "a NUL character (\\u0000), which no EDF field can hold",
            hint: "remove it; paths, names and values cannot contain NUL")
    }

    /// Parses and type-checks one EDF. Returns the definition (nil on a syntax error) and every
    /// problem found: all type errors of the file, and warnings for unknown keys when
    /// `warnUnknownKeys` is set.
    public static func parse(
        _ text: String, file: String, format: Format? = nil, warnUnknownKeys: Bool = true
    ) -> (EnvironmentDefinition?, [Diagnostic]) {
        let table: [String: EDFValue]
        var locator: KeyLocator?
        switch format ?? Format.detect(text) {
        case .toml:
            if let problem = nulCharacter(in: text, file: file) { return (nil, [problem]) }
            do {
                let parsed = try TOMLTable(string: text)
                guard case .table(let t) = EDFValue(toml: parsed) else { return (nil, []) }
                table = t
                locator = KeyLocator(text: text)
            } catch let error as TOMLParseError {
                let message = error.description.isEmpty ? "syntax error" : error.description
                // TOMLKit's words for a key given twice garble the key; say it plainly.
                if message.contains("redefine"), let twice = KeyLocator(text: text).repeated(onLine: error.source.begin.line) {
                    return (nil, [
                        Diagnostic(
                            kind: .syntax, file: file, line: error.source.begin.line, key: twice.path.joined(separator: "."),
                            message: "given a second time (first on line \(twice.first))",
                            hint: "TOML allows a key or a table once per file: keep one of them"),
                    ])
                }
                return (nil, [
                    Diagnostic(
                        kind: .syntax, file: file, line: error.source.begin.line, column: error.source.begin.column,
                        message: "TOML syntax error: \(message)",
                        hint: "an EDF is a TOML 1.0 file: key = \"value\" lines and [table] headers"),
                ])
            } catch {
                return (nil, [Diagnostic(kind: .syntax, file: file, message: "TOML syntax error: \(error)")])
            }
        case .json:
            do {
                // JSONSerialization says where the syntax breaks; JSONDecoder does not.
                _ = try JSONSerialization.jsonObject(with: Data(text.utf8))
                let shape = JSONShape.check(text, file: file)
                if let problem = shape.problem { return (nil, [problem]) }
                let decoded = try JSONDecoder().decode([String: EDFValue?].self, from: Data(text.utf8))
                if decoded["schemaVersion"] != nil {
                    // A stage's document fed back to the EDF tools.
                    return (nil, [
                        Diagnostic(
                            kind: .invalid, file: file,
                            message: "this is an environment document (what edf-expand and the later stages write), not an EDF",
                            hint: "give it to img-pull, img-squash or ns-enter; edf-merge and edf-expand read EDFs (TOML, or edf-merge --json)"),
                    ])
                }
                var values = decoded.compactMapValues { $0 }
                // A variable of env given as null is unset in the container, as "" (spec 1.6).
                if !shape.unsetVariables.isEmpty, case .table(var env) = values["env"] {
                    for name in shape.unsetVariables { env[name] = .string("") }
                    values["env"] = .table(env)
                }
                table = values
            } catch {
                return (nil, [
                    Diagnostic(
                        kind: .syntax, file: file, message: "JSON syntax error: \(describe(error))",
                        hint: "JSON input is expected to be what edf-merge --json prints: one object"),
                ])
            }
        }
        var decoder = Decoder(file: file, locator: locator, warnUnknownKeys: warnUnknownKeys)
        let definition = decoder.decode(table)
        return (definition, decoder.diagnostics)
    }

    static func describe(_ error: any Error) -> String {
        if case DecodingError.typeMismatch = error { return "the document is not a JSON object" }
        if let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
        return String(describing: error)
    }

    /// Checks the type of every known key and collects all problems of one file.
    struct Decoder {
        let file: String
        let locator: KeyLocator?
        let warnUnknownKeys: Bool
        var diagnostics: [Diagnostic] = []

        init(file: String, locator: KeyLocator?, warnUnknownKeys: Bool) {
            self.file = file
            self.locator = locator
            self.warnUnknownKeys = warnUnknownKeys
        }

        func location(_ path: [String]) -> SourceLocation {
            SourceLocation(file: file, line: locator?.line(for: path))
        }

        /// `element`: an array element's index, whose own line is reported.
        mutating func error(_ path: [String], key: String? = nil, element: Int? = nil, _ message: String, hint: String? = nil) {
            let line = element.flatMap { locator?.line(for: path, element: $0) } ?? location(path).line
            diagnostics.append(
                Diagnostic(
                    kind: .invalid, file: file, line: line, key: key ?? path.joined(separator: "."),
                    message: message, hint: hint))
        }

        mutating func typeError(
            _ path: [String], key: String? = nil, element: Int? = nil, expected: String, found: EDFValue, hint: String? = nil
        ) {
            error(path, key: key, element: element, "expected \(expected), found \(found.typeName) \(found.excerpt)", hint: hint)
        }

        mutating func decode(_ table: [String: EDFValue]) -> EnvironmentDefinition {
            var edf = EnvironmentDefinition()
            for key in table.keys.sorted() {
                guard let value = table[key] else { continue }
                let at = location([key])
                switch key {
                case "base_environment":
                    switch value {
                    case .string(let s):
                        edf.baseEnvironment = s.isEmpty ? [] : [Located(s, at: at)]
                    case .array(let items):
                        // An empty item names nothing: an error, as an empty name is elsewhere.
                        for (index, item) in items.enumerated() where item == .string("") {
                            error(
                                [key], key: "\(key)[\(index)]", element: index, "an empty environment name",
                                hint: "remove the empty item (base_environment = \"\" alone means no base)")
                        }
                        edf.baseEnvironment = strings(value, key: key)?.filter { !$0.value.isEmpty }
                    default:
                        typeError(
                            [key], expected: "a string or an array of strings", found: value,
                            hint: "write base_environment = \"name\" or base_environment = [\"a\", \"b\"]")
                    }
                case "image", "containerfile", "workdir":
                    guard case .string(let s) = value else {
                        typeError([key], expected: "a string", found: value, hint: "write \(key) = \"...\" with quotes")
                        continue
                    }
                    switch key {
                    case "image": edf.image = Located(s, at: at)
                    case "containerfile": edf.containerfile = Located(s, at: at)
                    default: edf.workdir = Located(s, at: at)
                    }
                case "entrypoint", "writable":
                    guard case .bool(let b) = value else {
                        var hint = "write \(key) = true or \(key) = false"
                        if case .string(let s) = value, s == "true" || s == "false" {
                            hint = "write \(key) = \(s), without quotes"
                        }
                        typeError([key], expected: "a boolean (true or false)", found: value, hint: hint)
                        continue
                    }
                    if key == "entrypoint" { edf.entrypoint = Located(b, at: at) } else { edf.writable = Located(b, at: at) }
                case "mounts", "devices":
                    guard case .array = value else {
                        var hint: String?
                        if case .string(let s) = value { hint = "write \(key) = [\"\(s)\"]" }
                        typeError([key], expected: "an array of strings", found: value, hint: hint)
                        continue
                    }
                    if let items = strings(value, key: key) {
                        if key == "mounts" { edf.mounts = items } else { edf.devices = items }
                    }
                case "env":
                    guard case .table(let t) = value else {
                        typeError(
                            [key], expected: "a table", found: value,
                            hint: "write the variables under an [env] header, one NAME = \"value\" per line")
                        continue
                    }
                    edf.env = environment(t)
                case "annotations":
                    guard case .table(let t) = value else {
                        typeError(
                            [key], expected: "a table", found: value,
                            hint: "write the annotations under an [annotations] header, e.g. com.hooks.ssh.enabled = \"true\"")
                        continue
                    }
                    var flat: [String: Located<String>] = [:]
                    flatten(t, prefix: [key], into: &flat)
                    edf.annotations = flat
                default:
                    edf.unknown[key] = Located(value, at: at)
                    if warnUnknownKeys {
                        var hint = "known keys: \(EnvironmentDefinition.knownKeys.joined(separator: ", "))"
                        if let guess = Self.closest(to: key, in: EnvironmentDefinition.knownKeys) {
                            hint = "did you mean '\(guess)'?"
                        }
                        diagnostics.append(
                            .warning(file: file, line: at.line, key: key, "unknown key, kept but not used", hint: hint))
                    }
                }
            }
            return edf
        }

        /// An array whose items must all be strings.
        mutating func strings(_ value: EDFValue, key: String) -> [Located<String>]? {
            guard case .array(let items) = value else { return nil }
            var result: [Located<String>] = []
            var ok = true
            for (index, item) in items.enumerated() {
                guard case .string(let s) = item else {
                    typeError(
                        [key], key: "\(key)[\(index)]", element: index, expected: "a string", found: item,
                        hint: "quote every item: \(key) = [\"...\", \"...\"]")
                    ok = false
                    continue
                }
                result.append(Located(s, at: SourceLocation(file: file, line: locator?.line(for: [key], element: index), element: index)))
            }
            return ok ? result : nil
        }

        mutating func environment(_ table: [String: EDFValue]) -> [String: Located<String>] {
            var result: [String: Located<String>] = [:]
            for name in table.keys.sorted() {
                guard let value = table[name] else { continue }
                let path = ["env", name]
                // A line break would split the variable in the line-based files hooks read
                // ($ENROOT_ENVIRON), as would other control characters their readers.
                if name.isEmpty || name.contains("=") || name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                    error(path, "invalid variable name \"\(Diagnostic.visible(name))\"", hint: "a variable name is not empty and has no '=' or control character (a line break)")
                    continue
                }
                switch value {
                case .string(let s):
                    result[name] = Located(s, at: location(path))
                case .table:
                    typeError(
                        path, expected: "a string", found: value,
                        hint: "a dotted name makes a table in TOML; quote it: \"\(name).NAME\" = \"value\"")
                default:
                    let quoted: String
                    switch value {
                    case .integer(let i): quoted = String(i)
                    case .float(let d): quoted = String(d)
                    case .bool(let b): quoted = String(b)
                    default: quoted = "..."
                    }
                    typeError(path, expected: "a string", found: value, hint: "values are strings: write \(name) = \"\(quoted)\"")
                }
            }
            return result
        }

        /// Nested annotation tables become dotted keys; booleans and numbers become strings.
        mutating func flatten(_ table: [String: EDFValue], prefix: [String], into result: inout [String: Located<String>]) {
            for name in table.keys.sorted() {
                guard let value = table[name] else { continue }
                let path = prefix + [name]
                let key = path.dropFirst().joined(separator: ".")
                // Hooks see an annotation as OCI_ANNOTATION_<key, . as __>: a key with an empty
                // part, a space or a '=' could never reach one.
                if key.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty)
                    || key.contains(where: { $0.isWhitespace || $0 == "=" || $0 == "\0" })
                {
                    error(
                        path, key: "annotations.\(key)", "not a usable annotation name",
                        hint: "annotation names are dot-separated words without spaces, e.g. com.hooks.ssh.enabled")
                    continue
                }
                let text: String
                switch value {
                case .table(let t):
                    flatten(t, prefix: path, into: &result)
                    continue
                case .string(let s): text = s
                case .bool(let b): text = String(b)
                case .integer(let i): text = String(i)
                case .float(let d): text = String(d)
                case .array, .datetime:
                    typeError(path, expected: "a string", found: value, hint: "annotation values are strings, e.g. \(name) = \"true\"")
                    continue
                }
                // TOML keeps "a.b" = ... (one quoted key) apart from a.b = ... (nested keys), but both
                // name the annotation a.b: one of the two values would be lost.
                if result[key] != nil {
                    error(
                        path, key: "annotations.\(key)",
                        "the annotation is given twice: once as a quoted key with dots, once as nested keys or a table",
                        hint: "keep one of them; com.hooks.x.enabled = \"true\" and [annotations.com.hooks.x] enabled = \"true\" are the same annotation")
                    continue
                }
                result[key] = Located(text, at: location(path))
            }
        }

        /// The known key nearest to a misspelt one (edit distance at most 2), for "did you mean".
        static func closest(to key: String, in candidates: [String]) -> String? {
            let lowered = key.lowercased()
            var best: (candidate: String, distance: Int)?
            for candidate in candidates {
                let d = distance(lowered, candidate)
                if let current = best, current.distance <= d { continue }
                best = (candidate, d)
            }
            guard let best else { return nil }
            let isPrefix = key.count >= 3 && best.candidate.hasPrefix(lowered)
            return best.distance <= 2 || isPrefix ? best.candidate : nil
        }

        /// Levenshtein distance.
        static func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a)
            let b = Array(b)
            if a.isEmpty { return b.count }
            if b.isEmpty { return a.count }
            var previous = Array(0...b.count)
            for i in 1...a.count {
                var current = [Int](repeating: 0, count: b.count + 1)
                current[0] = i
                for j in 1...b.count {
                    let substitution: Int = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                    let deletion: Int = previous[j] + 1
                    let insertion: Int = current[j - 1] + 1
                    current[j] = Swift.min(substitution, deletion, insertion)
                }
                previous = current
            }
            return previous[b.count]
        }
    }
}
