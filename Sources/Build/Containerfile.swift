import FoundationEssentials

/// The few things img-build reads from a Containerfile (Dockerfile) itself; the builder parses
/// the rest. Instructions are found as Docker does: a `\` at a line's end continues it, `#`
/// starts a comment line, keywords are case-insensitive.
public struct Containerfile: Sendable {
    public struct Instruction: Sendable, Equatable {
        /// The keyword in upper case (`FROM`, `RUN`, ...).
        public var keyword: String
        /// The rest, continuation lines joined.
        public var arguments: String
        /// The 1-based line the instruction starts on.
        public var line: Int
        /// Whether it fits on its one line (only such FROM lines are rewritten).
        public var singleLine: Bool
    }

    public let lines: [String]
    public let instructions: [Instruction]

    public init(text: String) {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.hasSuffix("\r") ? $0.dropLast() : $0) }
        var found: [Instruction] = []
        var index = 0
        while index < lines.count {
            let start = index
            var current = lines[index].trimmingWhitespace()
            index += 1
            if current.isEmpty || current.hasPrefix("#") { continue }
            var parts: [String] = []
            while current.hasSuffix("\\") {
                parts.append(String(current.dropLast()))
                current = ""
                // The next line that is neither empty nor a comment continues the instruction.
                while index < lines.count {
                    let candidate = lines[index].trimmingWhitespace()
                    index += 1
                    if candidate.isEmpty || candidate.hasPrefix("#") { continue }
                    current = candidate
                    break
                }
            }
            parts.append(current)
            let text = parts.joined(separator: " ").trimmingWhitespace()
            let keyword = text.prefix { !$0.isWhitespace }
            let arguments = text.dropFirst(keyword.count).trimmingWhitespace()
            found.append(Instruction(keyword: keyword.uppercased(), arguments: arguments, line: start + 1, singleLine: index - start == 1))
        }
        instructions = found
    }

    /// The image a FROM instruction names (its first word that is not an option).
    public static func image(of from: Instruction) -> String? {
        from.arguments.split(whereSeparator: \.isWhitespace).first { !$0.hasPrefix("--") }.map(String.init)
    }

    public var fromInstructions: [Instruction] { instructions.filter { $0.keyword == "FROM" } }

    /// Whether a FROM names the build argument `name` (`FROM $NAME`, `FROM ${NAME}`).
    public func fromUses(argument name: String) -> Bool {
        fromInstructions.contains { from in
            guard let image = Self.image(of: from) else { return false }
            return image.contains("$" + name) || image.contains("${" + name + "}")
        }
    }

    /// Whether an ARG instruction declares `name` (`ARG NAME` or `ARG NAME=default`).
    public func declares(argument name: String) -> Bool {
        instructions.contains { instruction in
            instruction.keyword == "ARG"
                && instruction.arguments.split(whereSeparator: \.isWhitespace).contains { $0 == name || $0.hasPrefix(name + "=") }
        }
    }

    /// The text with every single-line FROM whose image `matches` naming `replacement` instead;
    /// nil when no FROM matched.
    public func replacingFrom(where matches: (String) -> Bool, with replacement: String) -> String? {
        var result = lines
        var changed = false
        for from in fromInstructions where from.singleLine {
            guard let image = Self.image(of: from), matches(image) else { continue }
            let original = result[from.line - 1]
            guard let range = original.firstRange(of: image) else { continue }
            result[from.line - 1] = original.replacingCharacters(in: range, with: replacement)
            changed = true
        }
        return changed ? result.joined(separator: "\n") : nil
    }

    /// ENTRYPOINT and CMD of the final stage, as Docker applies them on top of the base's: an
    /// ENTRYPOINT resets an inherited CMD. Exec form (a JSON array) or shell form (`/bin/sh -c`).
    public func command(inheriting base: (entrypoint: [String]?, cmd: [String]?), shell: [String]) -> (entrypoint: [String]?, cmd: [String]?) {
        var entrypoint = base.entrypoint
        var cmd = base.cmd
        let lastStage = instructions.lastIndex { $0.keyword == "FROM" }.map { instructions[($0 + 1)...] } ?? instructions[...]
        var cmdSet = false
        for instruction in lastStage {
            switch instruction.keyword {
            case "ENTRYPOINT":
                entrypoint = Self.commandForm(instruction.arguments, shell: shell)
                if !cmdSet { cmd = nil }
            case "CMD":
                cmd = Self.commandForm(instruction.arguments, shell: shell)
                cmdSet = true
            default:
                continue
            }
        }
        return (entrypoint, cmd)
    }

    /// Whether the final stage starts from nothing: `FROM scratch`, directly or through the
    /// stages it names (`FROM scratch AS s` ... `FROM s`). Then nothing of the base's config
    /// (its command, user, labels) belongs to the image.
    public var finalStageIsScratch: Bool {
        var stageImages: [String: String] = [:]
        for from in fromInstructions {
            let words = from.arguments.split(whereSeparator: \.isWhitespace).filter { !$0.hasPrefix("--") }
            if words.count >= 3, words[1].lowercased() == "as" { stageImages[words[2].lowercased()] = String(words[0]) }
        }
        guard let last = fromInstructions.last, var image = Self.image(of: last) else { return false }
        var seen: Set<String> = []
        while let next = stageImages[image.lowercased()], seen.insert(image.lowercased()).inserted { image = next }
        return image.lowercased() == "scratch"
    }

    /// LABELs of the final stage over the base's: `LABEL k=v "k 2"="v 2"`, and the old
    /// `LABEL key value` form. `$NAME`, `${NAME}`, `${NAME:-word}` and `${NAME:+word}` in them
    /// are replaced as Docker does (not in single quotes): by the build arguments (`arguments`,
    /// else an ARG's default), the base's `environment` (`NAME=VALUE`) and the stage's ENVs.
    public func labels(inheriting base: [String: String], environment: [String] = [], arguments: [String: String] = [:]) -> [String: String] {
        var result = base
        var variables: [String: String] = [:]
        for entry in environment {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            variables[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        let lastFrom = instructions.lastIndex { $0.keyword == "FROM" }
        let firstFrom = instructions.firstIndex { $0.keyword == "FROM" }
        // ARGs before the first FROM give defaults that a stage's own ARG NAME takes up.
        var globalDefaults: [String: String] = [:]
        for instruction in instructions[..<(firstFrom ?? instructions.endIndex)] where instruction.keyword == "ARG" {
            for word in Self.words(instruction.arguments) {
                if let equals = word.firstIndex(of: "=") { globalDefaults[String(word[..<equals])] = Self.unquoted(String(word[word.index(after: equals)...])) }
            }
        }
        let lastStage = lastFrom.map { instructions[($0 + 1)...] } ?? instructions[...]
        for instruction in lastStage {
            switch instruction.keyword {
            case "ARG":
                for word in Self.words(instruction.arguments) {
                    let name = word.firstIndex(of: "=").map { String(word[..<$0]) } ?? word
                    let given = word.firstIndex(of: "=").map { Self.unquoted(Self.expanded(String(word[word.index(after: $0)...]), variables)) }
                    if let value = arguments[name] ?? given ?? globalDefaults[name] { variables[name] = value }
                }
            case "ENV":
                let words = Self.words(instruction.arguments)
                if let first = words.first, !first.contains("=") {
                    variables[Self.unquoted(first)] = Self.unquoted(Self.expanded(words.dropFirst().joined(separator: " "), variables))
                    continue
                }
                var assigned: [(String, String)] = []
                for word in words {
                    guard let equals = word.firstIndex(of: "=") else { continue }
                    assigned.append((Self.unquoted(String(word[..<equals])), Self.unquoted(Self.expanded(String(word[word.index(after: equals)...]), variables))))
                }
                for (name, value) in assigned { variables[name] = value }
            case "LABEL":
                let words = Self.words(instruction.arguments)
                if let first = words.first, !first.contains("=") {
                    result[Self.unquoted(first)] = words.dropFirst().map { Self.unquoted(Self.expanded($0, variables)) }.joined(separator: " ")
                    continue
                }
                for word in words {
                    guard let equals = word.firstIndex(of: "=") else { continue }
                    result[Self.unquoted(Self.expanded(String(word[..<equals]), variables))] =
                        Self.unquoted(Self.expanded(String(word[word.index(after: equals)...]), variables))
                }
            default:
                continue
            }
        }
        return result
    }

    /// `text` (a word with its quotes) with its variables replaced: `$NAME`, `${NAME}`,
    /// `${NAME:-word}`, `${NAME:+word}`; not inside single quotes, not after a backslash. An
    /// unknown variable is empty, as with Docker.
    static func expanded(_ text: String, _ variables: [String: String]) -> String {
        let characters = Array(text)
        var result = ""
        var index = 0
        var inSingle = false
        func isName(_ c: Character) -> Bool { c == "_" || (c.isASCII && (c.isLetter || c.isNumber)) }
        while index < characters.count {
            let c = characters[index]
            if c == "\\", !inSingle, index + 1 < characters.count {
                result.append(c)
                result.append(characters[index + 1])
                index += 2
                continue
            }
            if c == "'" { inSingle.toggle() }
            guard c == "$", !inSingle, index + 1 < characters.count else {
                result.append(c)
                index += 1
                continue
            }
            if characters[index + 1] == "{", let close = characters[(index + 2)...].firstIndex(of: "}") {
                let inner = String(characters[(index + 2)..<close])
                index = close + 1
                if let range = inner.range(of: ":-") {
                    let value = variables[String(inner[..<range.lowerBound])] ?? ""
                    result += value.isEmpty ? expanded(String(inner[range.upperBound...]), variables) : value
                } else if let range = inner.range(of: ":+") {
                    let value = variables[String(inner[..<range.lowerBound])] ?? ""
                    result += value.isEmpty ? "" : expanded(String(inner[range.upperBound...]), variables)
                } else {
                    result += variables[inner] ?? ""
                }
                continue
            }
            var end = index + 1
            while end < characters.count, isName(characters[end]) { end += 1 }
            if end == index + 1 {
                result.append(c)
                index += 1
                continue
            }
            result += variables[String(characters[(index + 1)..<end])] ?? ""
            index = end
        }
        return result
    }

    /// Splits on blanks outside double or single quotes (the quotes stay, for `unquoted`).
    static func words(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        var quote: Character?
        var escaped = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" && quote != "'" {
                current.append(character)
                escaped = true
            } else if let q = quote {
                current.append(character)
                if character == q { quote = nil }
            } else if character == "\"" || character == "'" {
                current.append(character)
                quote = character
            } else if character == " " || character == "\t" {
                if !current.isEmpty { result.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// A word without its quotes, backslash escapes resolved in double quotes and outside.
    static func unquoted(_ word: String) -> String {
        var result = ""
        var quote: Character?
        var escaped = false
        for character in word {
            if escaped {
                result.append(character)
                escaped = false
            } else if character == "\\" && quote != "'" {
                escaped = true
            } else if let q = quote, character == q {
                quote = nil
            } else if quote == nil && (character == "\"" || character == "'") {
                quote = character
            } else {
                result.append(character)
            }
        }
        return result
    }

    static func commandForm(_ text: String, shell: [String]) -> [String] {
        if text.hasPrefix("["), let array = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) {
            return array
        }
        return shell + [text]
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let start = firstIndex { !$0.isWhitespace } ?? endIndex
        let end = lastIndex { !$0.isWhitespace }.map { index(after: $0) } ?? endIndex
        return start < end ? String(self[start..<end]) : ""
    }
}
