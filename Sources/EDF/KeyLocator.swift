/// Finds the line on which a key is written in a TOML file, for error messages. TOMLKit gives
/// positions for syntax errors only; this scans the (already parsed, hence valid) text for table
/// headers and `key =` lines. It reads no values: the parsing is TOMLKit's.
struct KeyLocator: Sendable {
    private var entries: [(path: [String], line: Int)] = []
    /// The first line of each path: looked up once per key of a file (a scan of `entries` each
    /// time made a file of 40,000 variables take seconds).
    private var firstLines: [[String]: Int] = [:]
    /// For a key whose value is an array: the line on which each element starts.
    private var elements: [[String]: [Int]] = [:]

    init(text: String) {
        var table: [String] = []
        var openMultiline: String?
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, rawLine) in lines.enumerated() {
            let line = rawLine.drop(while: { $0 == " " || $0 == "\t" })
            if openMultiline != nil {
                // The rest of its line after the string's end may open another one.
                openMultiline = Self.openMultiline(in: line, open: openMultiline)
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                let inner = line.drop(while: { $0 == "[" })
                if let end = Self.firstUnquoted("]", in: inner) {
                    table = Self.components(inner[..<end])
                    entries.append((table, index + 1))
                    if firstLines[table] == nil { firstLines[table] = index + 1 }
                }
                continue
            }
            guard let equals = Self.firstUnquoted("=", in: line) else { continue }
            let path = table + Self.components(line[..<equals])
            entries.append((path, index + 1))
            if firstLines[path] == nil { firstLines[path] = index + 1 }
            let value = line[line.index(after: equals)...]
            if let open = value.firstIndex(where: { $0 != " " && $0 != "\t" }), value[open] == "[" {
                elements[path] = Self.elementLines(lines, line: index, from: value.index(after: open))
            }
            openMultiline = Self.openMultiline(in: value, open: nil)
        }
    }

    /// A key or table written a second time on `line` (what TOML forbids), with the line of its
    /// first definition.
    func repeated(onLine line: Int) -> (path: [String], first: Int)? {
        guard let second = entries.first(where: { $0.line == line }),
            let first = entries.first(where: { $0.path == second.path && $0.line < line })
        else { return nil }
        return (second.path, first.line)
    }

    /// The line on which element `element` of the array at `path` starts, else the key's line.
    func line(for path: [String], element: Int) -> Int? {
        if let lines = elements[path], element < lines.count { return lines[element] }
        return line(for: path)
    }

    /// The (1-based) lines on which the elements of an array start, from just after its `[` at
    /// `lines[line]`, `start`, to its `]`: strings (basic, literal, multi-line), nested arrays and
    /// inline tables, other scalars; comments and line breaks between them.
    static func elementLines(_ lines: [Substring], line first: Int, from start: Substring.Index) -> [Int] {
        var result: [Int] = []
        var depth = 1
        var quote: String?
        var expectingElement = true
        var lineIndex = first
        var text = lines[first][start...]
        while lineIndex < lines.count {
            var index = text.startIndex
            lineLoop: while index < text.endIndex {
                let rest = text[index...]
                if quote != nil {
                    Self.advance(inString: text, &index, &quote)
                    continue
                }
                let c = text[index]
                switch c {
                case " ", "\t", "\r": break
                case "#": break lineLoop
                case ",":
                    if depth == 1 { expectingElement = true }
                case "]", "}":
                    depth -= 1
                    if depth == 0 { return result }
                default:
                    if depth == 1 && expectingElement {
                        result.append(lineIndex + 1)
                        expectingElement = false
                    }
                    if c == "[" || c == "{" {
                        depth += 1
                    } else if c == "\"" || c == "'" {
                        let triple = String(repeating: c, count: 3)
                        quote = rest.hasPrefix(triple) ? triple : String(c)
                        index = text.index(index, offsetBy: quote?.count ?? 1)
                        continue
                    }
                }
                index = text.index(after: index)
            }
            lineIndex += 1
            if lineIndex < lines.count { text = lines[lineIndex][...] }
        }
        return result
    }

    /// The line of `path`, or of the nearest enclosing key that was written out (an inline table,
    /// an array, a table header).
    func line(for path: [String]) -> Int? {
        if let exact = firstLines[path] { return exact }
        var best: (length: Int, line: Int)?
        for entry in entries where entry.path.count < path.count && Array(path.prefix(entry.path.count)) == entry.path {
            if let current = best, current.length >= entry.path.count { continue }
            best = (entry.path.count, entry.line)
        }
        return best?.line
    }

    /// One step inside the string `quote` opened: an escape (in basic strings: the next
    /// character is taken as it is), the closing delimiter (a multi-line one with up to two more
    /// quotes of its kind, which belong to the string), or one character.
    static func advance(inString text: Substring, _ index: inout Substring.Index, _ quote: inout String?) {
        guard let q = quote else { return }
        if q.first == "\"" && text[index] == "\\" {
            index = text.index(after: index)
            if index < text.endIndex { index = text.index(after: index) }
            return
        }
        if text[index...].hasPrefix(q) {
            quote = nil
            index = text.index(index, offsetBy: q.count)
            while q.count == 3, index < text.endIndex, text[index] == q.first { index = text.index(after: index) }
            return
        }
        index = text.index(after: index)
    }

    /// The multi-line string delimiter (`"""` or `'''`) still open at the end of `text`, which
    /// starts inside such a string when `open` says so. Strings of every kind, escapes and
    /// comments are followed, so that a `"""` inside a one-line string opens nothing.
    static func openMultiline(in text: Substring, open: String?) -> String? {
        var quote = open
        var index = text.startIndex
        while index < text.endIndex {
            let rest = text[index...]
            if quote != nil {
                Self.advance(inString: text, &index, &quote)
                continue
            }
            let c = text[index]
            if c == "#" { return nil }
            if c == "\"" || c == "'" {
                let triple = String(repeating: c, count: 3)
                quote = rest.hasPrefix(triple) ? triple : String(c)
                index = text.index(index, offsetBy: quote?.count ?? 1)
                continue
            }
            index = text.index(after: index)
        }
        // Only a multi-line string runs past its line (the text was parsed: TOML allows no other).
        return quote?.count == 3 ? quote : nil
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
