import ToolboxCore
import ToolboxModel

/// enroot's fstab dialect, as hooks write it to `$ENROOT_MOUNTS`:
///
///     SOURCE TARGET [TYPE [OPTIONS [FREQ [PASSNO]]]]
///
/// Fields are separated by blanks and fstab-escaped (`\040` space, `\011` tab, `\012` newline,
/// `\\`); `${VAR}` is replaced by the variable's value; `#` starts a comment line. Short forms:
/// `/src` is `/src /src none rbind,x-create=auto`; `/src /dst` is `... none rbind,x-create=auto`;
/// `tmpfs /dst` is a tmpfs; a field of options in place of TARGET or TYPE is the options (as
/// enroot-mount guesses); a line whose pass is not 0 is left out. TARGET is a path inside the
/// container. Options: `x-create=dir|file|auto` (create the mount point), `x-detach` (unmount
/// TARGET), `remount`, `nofail`, `silent`, `bind`, `rbind`, `ro`, `rw`, `nosuid`, `nodev`,
/// `noexec`, propagation flags; for other types the rest go to the file system (FstabMounter).
public enum Fstab {
    public static func parse(_ text: String, origin: String, environment: [String: String]) throws(Diagnostic) -> [FstabEntry] {
        var entries: [FstabEntry] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
            let place = "\(origin):\(index + 1)"
            var fields: [String] = []
            for field in line.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                fields.append(try expand(unescape(String(field)), environment: environment, place: place))
            }
            guard fields.count <= 6 else {
                throw Diagnostic(
                    kind: .invalid, file: origin, line: index + 1, message: "an fstab line has at most 6 fields, found \(fields.count)",
                    hint: "write SOURCE TARGET TYPE OPTIONS (spaces in paths as \\040); a comment is a line of its own starting with #")
            }
            // Fields 5 and 6 (dump, pass) are numbers: anything else is a line that says more
            // than it seems (a comment after the options is not one).
            var numbers: [Int] = []
            for field in fields.dropFirst(4) {
                guard let number = Int(field) else {
                    throw Diagnostic(
                        kind: .invalid, file: origin, line: index + 1, message: "'\(field)' is not a number (fields 5 and 6 of an fstab line are dump and pass)",
                        hint: "a comment is a line of its own starting with #")
                }
                numbers.append(number)
            }
            // As enroot-mount: the pass (the dump field when there is no pass) picks the round;
            // the hooks' mounts are round 0, other lines are not for it.
            let pass = numbers.count > 1 && numbers[1] != 0 ? numbers[1] : (numbers.first ?? 0)
            if pass != 0 { continue }
            var source = fields[0]
            var target = fields.count > 1 ? fields[1] : ""
            var type = fields.count > 2 ? fields[2] : ""
            var optionText = fields.count > 3 ? fields[3] : ""
            // The short forms enroot-mount guesses: "/src OPTIONS", "/src /dst OPTIONS",
            // "none /dst none OPTIONS" (a field of options: it has a comma or is an option).
            if !target.isEmpty && type.isEmpty && optionText.isEmpty && isOption(target) {
                (optionText, type, target) = (target, "none", "")
            }
            if !type.isEmpty && optionText.isEmpty && isOption(type) {
                (optionText, type) = (type, "none")
                if target == "none" { target = "" }
            }
            var options = optionText.split(separator: ",").map(String.init)
            if source == "tmpfs" {
                if type.isEmpty || type == "none" { type = "tmpfs" }
                // "tmpfs /dst": the mount point made as well (enroot-mount wants it there).
                if fields.count <= 2 { options = ["x-create=dir"] }
            } else {
                if target.isEmpty { target = source }
                if type.isEmpty || type == "none" {
                    type = "none"
                    if options.isEmpty { options = ["rbind", "x-create=auto"] }
                }
            }
            if source.isEmpty { source = "none" }
            guard !target.isEmpty else {
                throw Diagnostic(kind: .invalid, file: origin, line: index + 1, message: "an fstab line needs a target")
            }
            entries.append(FstabEntry(source: source, target: target, type: type, options: options, origin: place))
        }
        return entries
    }

    /// enroot-mount's options: the names it knows (a field with a comma is options too).
    static let optionNames: Set<String> = [
        "async", "atime", "bind", "dev", "diratime", "dirsync", "exec", "iversion", "loud", "mand", "noatime", "nodev",
        "nodiratime", "noexec", "noiversion", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime",
        "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid",
        "sync", "unbindable", "lazytime", "nolazytime", "auto", "defaults", "group", "noauto", "nofail", "nogroup", "noowner",
        "nouser", "nousers", "owner", "user", "users", "x-create=dir", "x-create=file", "x-create=auto", "x-move", "x-detach",
    ]

    static func isOption(_ field: String) -> Bool {
        field.contains(",") || optionNames.contains(field)
    }

    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        let bytes = Array(field.utf8)
        let octal = UInt8(ascii: "0")...UInt8(ascii: "7")
        var result: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\") {
                if index + 3 < bytes.count, bytes[(index + 1)...(index + 3)].allSatisfy({ octal.contains($0) }) {
                    let value = bytes[(index + 1)...(index + 3)].reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
                    if value < 256 {
                        result.append(UInt8(value))
                        index += 4
                        continue
                    }
                }
                if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\\") {
                    result.append(UInt8(ascii: "\\"))
                    index += 2
                    continue
                }
            }
            result.append(bytes[index])
            index += 1
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// `${NAME}` replaced by the variable's value (an error when it is not set).
    static func expand(_ field: String, environment: [String: String], place: String) throws(Diagnostic) -> String {
        guard field.contains("${") else { return field }
        var result = ""
        var rest = Substring(field)
        while let start = rest.firstRange(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw Diagnostic(kind: .invalid, file: place, message: "unterminated ${ in '\(field)'")
            }
            let name = String(rest[start.upperBound..<end])
            guard let value = environment[name] else {
                throw Diagnostic(kind: .invalid, file: place, message: "variable \(name) is not set")
            }
            result += value
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }
}
