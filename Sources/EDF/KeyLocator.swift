/// Finds the line on which a key is written in a TOML file, for error messages. TOMLKit gives
/// positions for syntax errors only; this scans the (already parsed, hence valid) text for table
/// headers and `key =` lines. It reads no values: the parsing is TOMLKit's.
struct KeyLocator: Sendable {
    private var entries: [(path: [String], line: Int)] = []

    init(text: String) {
        var table: [String] = []
        var openMultiline: String?
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.drop(while: { $0 == " " || $0 == "\t" })
            if let delimiter = openMultiline {
                if Self.count(of: delimiter, in: line) % 2 == 1 { openMultiline = nil }
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                let inner = line.drop(while: { $0 == "[" })
                if let end = Self.firstUnquoted("]", in: inner) {
                    table = Self.components(inner[..<end])
                    entries.append((table, index + 1))
                }
                continue
            }
            guard let equals = Self.firstUnquoted("=", in: line) else { continue }
            entries.append((table + Self.components(line[..<equals]), index + 1))
            let value = line[line.index(after: equals)...]
            for delimiter in ["\"\"\"", "'''"] where Self.count(of: delimiter, in: value) % 2 == 1 {
                openMultiline = delimiter
            }
        }
    }

    /// The line of `path`, or of the nearest enclosing key that was written out (an inline table,
    /// an array, a table header).
    func line(for path: [String]) -> Int? {
        if let exact = entries.first(where: { $0.path == path }) { return exact.line }
        var best: (length: Int, line: Int)?
        for entry in entries where entry.path.count < path.count && Array(path.prefix(entry.path.count)) == entry.path {
            if let current = best, current.length >= entry.path.count { continue }
            best = (entry.path.count, entry.line)
        }
        return best?.line
    }

    static func count(of needle: String, in text: Substring) -> Int {
        var count = 0
        var rest = text[...]
        while let range = rest.range(of: needle) {
            count += 1
            rest = rest[range.upperBound...]
        }
        return count
    }

    static func firstUnquoted(_ target: Character, in text: Substring) -> Substring.Index? {
        var quote: Character?
        var index = text.startIndex
        while index < text.endIndex {
            let c = text[index]
            if let q = quote {
                if c == "\\" && q == "\"" {
                    index = text.index(after: index)
                    if index == text.endIndex { break }
                } else if c == q {
                    quote = nil
                }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == target {
                return index
            } else if c == "#" {
                return nil
            }
            index = text.index(after: index)
        }
        return nil
    }

    /// Splits a (possibly dotted, possibly quoted) TOML key into its components.
    static func components(_ key: Substring) -> [String] {
        var parts: [String] = []
        var current = ""
        var quote: Character?
        for c in key {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "." {
                parts.append(current)
                current = ""
            } else if c != " " && c != "\t" {
                current.append(c)
            }
        }
        parts.append(current)
        return parts
    }
}
