/// enroot's environ files (the hooks' ENROOT_ENVIRON, an image's /etc/environment): `KEY=VALUE`
/// lines, `export ` allowed; comments, blank lines, invalid names and `ENROOT_*` are dropped,
/// surrounding quotes removed (enroot's common::envfmt).
public enum EnvironFile {
    public static func parse(_ text: String) -> [(String, String)] {
        var result: [(String, String)] = []
        let blanks: Set<Character> = [" ", "\t", "\r"]
        for rawLine in text.split(separator: "\n") {
            var trimmed = rawLine.drop { blanks.contains($0) }
            while let last = trimmed.last, blanks.contains(last) { trimmed = trimmed.dropLast() }
            var line = String(trimmed)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line.removeFirst("export ".count) }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let name = String(line[..<equals])
            var value = String(line[line.index(after: equals)...])
            guard isName(name), !name.hasPrefix("ENROOT_") else { continue }
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            result.append((name, value))
        }
        return result
    }

    public static func isName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }
}
