import Foundation

extension EnvironmentDefinition {
    /// The definition as a TOML EDF: known keys first, unknown keys after, then `[env]` and
    /// `[annotations]`. The text parses back to the same definition.
    public var tomlText: String {
        var lines: [String] = []
        if let v = image { lines.append("image = \(TOMLText.string(v.value))") }
        if let v = containerfile { lines.append("containerfile = \(TOMLText.string(v.value))") }
        if let v = workdir { lines.append("workdir = \(TOMLText.string(v.value))") }
        if let v = entrypoint { lines.append("entrypoint = \(v.value)") }
        if let v = writable { lines.append("writable = \(v.value)") }
        for (key, list) in [("mounts", mounts), ("devices", devices)] {
            guard let list else { continue }
            if list.isEmpty {
                lines.append("\(key) = []")
            } else {
                lines.append("\(key) = [")
                lines += list.map { "  \(TOMLText.string($0.value))," }
                lines.append("]")
            }
        }
        for key in unknown.keys.sorted() {
            if let v = unknown[key] { lines.append("\(TOMLText.key(key)) = \(TOMLText.inline(v.value))") }
        }
        if let env {
            lines.append("")
            lines.append("[env]")
            for name in env.keys.sorted() {
                if let v = env[name] { lines.append("\(TOMLText.key(name)) = \(TOMLText.string(v.value))") }
            }
        }
        if let annotations {
            lines.append("")
            lines.append("[annotations]")
            let keys = annotations.keys.sorted()
            // Dotted keys as users write them, unless one key is a prefix of another ("a" and
            // "a.b"), which TOML cannot express with dotted keys: then every key is quoted whole.
            let keySet = Set(keys)
            let clash = keys.contains { key in
                let parts = key.split(separator: ".", omittingEmptySubsequences: false)
                return parts.count > 1 && (1..<parts.count).contains { keySet.contains(parts[0..<$0].joined(separator: ".")) }
            }
            for key in keys {
                guard let v = annotations[key] else { continue }
                let parts = key.split(separator: ".", omittingEmptySubsequences: false)
                let dotted = !clash && !parts.contains(where: \.isEmpty)
                let written = dotted ? parts.map { TOMLText.key(String($0)) }.joined(separator: ".") : TOMLText.string(key)
                lines.append("\(written) = \(TOMLText.string(v.value))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The definition as JSON (the same fields as the TOML form, annotations flattened), which
    /// `edf-expand` reads like a TOML EDF.
    public var jsonValue: EDFValue {
        var table: [String: EDFValue] = [:]
        for (key, v) in unknown { table[key] = v.value }
        if let v = image { table["image"] = .string(v.value) }
        if let v = containerfile { table["containerfile"] = .string(v.value) }
        if let v = workdir { table["workdir"] = .string(v.value) }
        if let v = entrypoint { table["entrypoint"] = .bool(v.value) }
        if let v = writable { table["writable"] = .bool(v.value) }
        if let v = mounts { table["mounts"] = .array(v.map { .string($0.value) }) }
        if let v = devices { table["devices"] = .array(v.map { .string($0.value) }) }
        if let v = env { table["env"] = .table(v.mapValues { .string($0.value) }) }
        if let v = annotations { table["annotations"] = .table(v.mapValues { .string($0.value) }) }
        return .table(table)
    }
}

/// Writing TOML values (the parsing is TOMLKit's).
enum TOMLText {
    static func key(_ key: String) -> String {
        let bare = !key.isEmpty && key.unicodeScalars.allSatisfy(isBareKeyCharacter)
        return bare ? key : string(key)
    }

    static func isBareKeyCharacter(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if v >= 0x61 && v <= 0x7A { return true }  // a-z
        if v >= 0x41 && v <= 0x5A { return true }  // A-Z
        if v >= 0x30 && v <= 0x39 { return true }  // 0-9
        return v == 0x5F || v == 0x2D  // _ -
    }

    static func string(_ value: String) -> String {
        var out = "\""
        for c in value.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 || c.value == 0x7F {
                    let hex = String(c.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out + "\""
    }

    static func inline(_ value: EDFValue) -> String {
        switch value {
        case .string(let s): return string(s)
        case .integer(let i): return String(i)
        case .float(let d):
            if d.isNaN { return "nan" }
            if d.isInfinite { return d < 0 ? "-inf" : "inf" }
            let text = String(d)
            return text.contains(".") || text.contains("e") ? text : text + ".0"
        case .bool(let b): return String(b)
        case .datetime(let d): return d
        case .array(let items): return "[" + items.map(inline).joined(separator: ", ") + "]"
        case .table(let t):
            return "{ " + t.keys.sorted().compactMap { k in t[k].map { "\(key(k)) = \(inline($0))" } }.joined(separator: ", ") + " }"
        }
    }
}
