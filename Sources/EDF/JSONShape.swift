import Foundation
import ToolboxCore

/// What JSONDecoder lets pass in edf-merge's JSON that the EDF tools refuse: a key given twice in
/// one object (the decoder keeps one of them silently; TOML forbids it), `null` below the top
/// level other than an env value (an EDF has no null: it would be dropped silently), and NUL
/// characters (no field can hold one). Runs on text that JSONSerialization has accepted, so the
/// syntax is known good.
enum JSONShape {
    struct Findings {
        /// The first such problem, or nil.
        var problem: Diagnostic?
        /// The variables of `env` given as null (unset: the decoder drops them).
        var unsetVariables: [String]
    }

    /// What the scan of `text` (read from `file`) finds.
    static func check(_ text: String, file: String) -> Findings {
        var scanner = Scanner(bytes: Array(text.utf8), file: file)
        let problem = scanner.value(path: [], depth: 0)
        return Findings(problem: problem, unsetVariables: scanner.unset)
    }

    private struct Scanner {
        let bytes: [UInt8]
        let file: String
        var index = 0
        var line = 1
        var unset: [String] = []

        init(bytes: [UInt8], file: String) {
            self.bytes = bytes
            self.file = file
        }

        mutating func skipBlanks() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) {
                if bytes[index] == 0x0A { line += 1 }
                index += 1
            }
        }

        static func render(_ path: [String]) -> String {
            var text = ""
            for part in path {
                if part.hasPrefix("[") { text += part } else { text += text.isEmpty ? part : "." + part }
            }
            return text
        }

        /// A string token from the opening quote, decoded; nil when it cannot be.
        mutating func string() -> String? {
            let start = index
            index += 1
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                if bytes[index] == UInt8(ascii: "\\") { index += 1 }
                index += 1
            }
            index += 1
            guard index <= bytes.count else { return nil }
            return try? JSONDecoder().decode(String.self, from: Data(bytes[start..<index]))
        }

        mutating func value(path: [String], depth: Int) -> Diagnostic? {
            skipBlanks()
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var seen: [String: Int] = [:]
                while true {
                    skipBlanks()
                    guard index < bytes.count else { return nil }
                    if bytes[index] == UInt8(ascii: "}") {
                        index += 1
                        return nil
                    }
                    if bytes[index] == UInt8(ascii: ",") {
                        index += 1
                        continue
                    }
                    let keyLine = line
                    guard let key = string() else { return nil }
                    let keyPath = Self.render(path + [key.split(separator: "\0", omittingEmptySubsequences: false).joined(separator: "\\u0000")])
                    if key.contains("\0") {
                        return EnvironmentDefinition.nulCharacter(file: file, line: keyLine, key: keyPath)
                    }
                    if let first = seen[key] {
                        return Diagnostic(
                            kind: .syntax, file: file, line: keyLine, key: keyPath, message: "given a second time (first on line \(first))",
                            hint: "a key may appear once in an object: keep one of them")
                    }
                    seen[key] = keyLine
                    skipBlanks()
                    index += 1  // the colon
                    if let problem = value(path: path + [key], depth: depth + 1) { return problem }
                }
            case UInt8(ascii: "["):
                index += 1
                var element = 0
                while true {
                    skipBlanks()
                    guard index < bytes.count else { return nil }
                    if bytes[index] == UInt8(ascii: "]") {
                        index += 1
                        return nil
                    }
                    if bytes[index] == UInt8(ascii: ",") {
                        index += 1
                        continue
                    }
                    if let problem = value(path: path + ["[\(element)]"], depth: depth + 1) { return problem }
                    element += 1
                }
            case UInt8(ascii: "\""):
                let valueLine = line
                if let text = string(), text.contains("\0") {
                    return EnvironmentDefinition.nulCharacter(file: file, line: valueLine, key: Self.render(path))
                }
                return nil
            case UInt8(ascii: "n"):
                // null: "not set" for a top-level key, "unset" for a variable of env (as ""; spec
                // 1.6); nothing else can be null.
                if depth == 2 && path.first == "env" {
                    unset.append(path[1])
                } else if depth > 1 {
                    return Diagnostic(
                        kind: .invalid, file: file, line: line, key: Self.render(path), message: "null, which an EDF cannot hold here",
                        hint: "remove the entry (only a top-level key may be null: not set)")
                }
                index += 4
                return nil
            default:
                // Numbers, true, false: up to the next delimiter.
                while index < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) {
                    index += 1
                }
                return nil
            }
        }
    }
}
