import TOMLKit

/// A value as it appears in an EDF, whether it was read from TOML or from edf-merge's JSON.
/// Known keys are checked against their expected type; unknown keys are carried through as is.
public indirect enum EDFValue: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case float(Double)
    case bool(Bool)
    /// A TOML date, time or date-time, kept as its TOML literal text.
    case datetime(String)
    case array([EDFValue])
    case table([String: EDFValue])

    /// The first number JSON cannot write (nan, inf), with its key path ("a.b[2]").
    public func nonFiniteNumber(at path: String = "") -> (path: String, value: Double)? {
        switch self {
        case .float(let value): return value.isFinite ? nil : (path, value)
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = item.nonFiniteNumber(at: "\(path)[\(index)]") { return found }
            }
            return nil
        case .table(let table):
            for key in table.keys.sorted() {
                if let found = table[key]?.nonFiniteNumber(at: path.isEmpty ? key : path + "." + key) { return found }
            }
            return nil
        default: return nil
        }
    }

    /// The name used in "expected X, found Y" messages.
    public var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a floating-point number"
        case .bool: "a boolean"
        case .datetime: "a date-time"
        case .array: "an array"
        case .table: "a table"
        }
    }

    /// A short rendering of the value for error messages (strings quoted, long values cut).
    public var excerpt: String {
        let text: String
        switch self {
        case .string(let s):
            text = "\"" + s + "\""
        case .integer(let i):
            text = String(i)
        case .float(let d):
            text = String(d)
        case .bool(let b):
            text = String(b)
        case .datetime(let d):
            text = d
        case .array(let items):
            let inner: [String] = items.map { $0.excerpt }
            text = "[" + inner.joined(separator: ", ") + "]"
        case .table(let t):
            var inner: [String] = []
            for key in t.keys.sorted() {
                if let value = t[key] { inner.append(key + " = " + value.excerpt) }
            }
            text = "{" + inner.joined(separator: ", ") + "}"
        }
        if text.count <= 60 { return text }
        return String(text.prefix(57)) + "..."
    }
}

// MARK: - From TOMLKit

extension EDFValue {
    init(toml value: any TOMLValueConvertible) {
        switch value.type {
        case .string:
            self = .string(value.string ?? "")
        case .int:
            self = .integer(value.int ?? 0)
        case .double:
            self = .float(value.double ?? 0)
        case .bool:
            self = .bool(value.bool ?? false)
        case .date:
            self = .datetime(value.date.map(Self.literal(date:)) ?? "")
        case .time:
            self = .datetime(value.time.map(Self.literal(time:)) ?? "")
        case .dateTime:
            if let dt = value.dateTime {
                var text = Self.literal(date: dt.date) + "T" + Self.literal(time: dt.time)
                if let offset = dt.offset?.offset {
                    text += Self.literal(offsetMinutes: offset)
                }
                self = .datetime(text)
            } else {
                self = .datetime("")
            }
        case .array:
            var items: [EDFValue] = []
            if let array = value.array {
                for item in array { items.append(EDFValue(toml: item)) }
            }
            self = .array(items)
        case .table:
            var result: [String: EDFValue] = [:]
            if let table = value.table {
                for (key, child) in table { result[key] = EDFValue(toml: child) }
            }
            self = .table(result)
        }
    }

    static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    static func literal(date: TOMLDate) -> String {
        pad(date.year, 4) + "-" + pad(date.month, 2) + "-" + pad(date.day, 2)
    }

    static func literal(time: TOMLTime) -> String {
        var text = pad(time.hour, 2) + ":" + pad(time.minute, 2) + ":" + pad(time.second, 2)
        if time.nanoSecond > 0 {
            var fraction = pad(time.nanoSecond, 9)
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text
    }

    static func literal(offsetMinutes offset: Int) -> String {
        if offset == 0 { return "Z" }
        let total = abs(offset)
        let sign = offset < 0 ? "-" : "+"
        return sign + pad(total / 60, 2) + ":" + pad(total % 60, 2)
    }
}

// MARK: - JSON

/// JSON has no date-times; they are written as strings. JSON `null` reads as "not set" (only a
/// top-level key may be null: JSONShape refuses the others before decoding).
extension EDFValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int.self) {
            self = .integer(i)
        } else if let d = try? container.decode(Double.self) {
            self = .float(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([EDFValue?].self) {
            self = .array(a.compactMap { $0 })
        } else {
            let t = try container.decode([String: EDFValue?].self)
            self = .table(t.compactMapValues { $0 })
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let s): try container.encode(s)
        case .integer(let i): try container.encode(i)
        case .float(let d): try container.encode(d)
        case .bool(let b): try container.encode(b)
        case .datetime(let d): try container.encode(d)
        case .array(let a): try container.encode(a)
        case .table(let t): try container.encode(t)
        }
    }
}
