#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ToolboxCore
import ToolboxModel

/// A registry user name and password (or token), and where it was read from. Never printed.
public struct Credential: Sendable, Equatable {
    public var user: String
    public var password: String
    /// The file it came from, for error messages ("wrong credentials from ~/.docker/config.json").
    public var source: String

    public var basicHeader: String {
        "Authorization: Basic " + Data((user + ":" + password).utf8).base64EncodedString()
    }
}

/// Where credentials are looked up, in order: the enroot-compatible netrc file
/// (`$ENROOT_CONFIG_PATH/.credentials`, default `${XDG_CONFIG_HOME:-~/.config}/enroot/.credentials`), then Docker's
/// `config.json` (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`, key `auths`).
public struct CredentialStore: Sendable {
    public var netrcPath: String?
    public var dockerConfigPath: String?
    public var environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
        let home = environment["HOME"] ?? ""
        if let config = environment["ENROOT_CONFIG_PATH"], !config.isEmpty {
            netrcPath = config + "/.credentials"
        } else if let config = environment["XDG_CONFIG_HOME"], config.hasPrefix("/") {
            // enroot's ENROOT_CONFIG_PATH default: ${XDG_CONFIG_HOME:-$HOME/.config}/enroot.
            netrcPath = config + "/enroot/.credentials"
        } else if !home.isEmpty {
            netrcPath = home + "/.config/enroot/.credentials"
        }
        if let docker = environment["DOCKER_CONFIG"], !docker.isEmpty {
            dockerConfigPath = docker + "/config.json"
        } else if !home.isEmpty {
            dockerConfigPath = home + "/.docker/config.json"
        }
    }

    /// The files that exist and were consulted, for error messages.
    public var consultedFiles: [String] {
        [netrcPath, dockerConfigPath].compactMap { $0 }.filter { FileReader.kind(of: $0) == .regularFile }
    }

    /// The credential for a registry host (port stripped for netrc, as enroot does), optionally
    /// for a given user. A password `$VAR` whose variable is not set, and a Docker config that is
    /// not JSON, are errors that say so (they would otherwise look like wrong credentials).
    public func credential(for registry: String, user: String? = nil) throws(Diagnostic) -> Credential? {
        let host = ImageReference.host(ofRegistry: registry)
        let netrc = netrcPath.flatMap { path in (try? FileReader.readText(path)).map { (path, Self.parseNetrc($0)) } }
        func fromNetrc(_ entries: [NetrcEntry]) throws(Diagnostic) -> Credential? {
            guard let (path, _) = netrc else { return nil }
            for entry in entries {
                if let user, entry.login != user { continue }
                return Credential(
                    user: entry.login, password: try expand(entry.password, file: path, machine: entry.machine.isEmpty ? "default" : entry.machine),
                    source: path)
            }
            return nil
        }
        // The most exact entry wins: netrc's machine with the port, then without it (as enroot
        // takes it), then Docker's entry for the registry, then netrc's `default` (for any host,
        // as curl takes it).
        let entries = netrc?.1 ?? []
        if let found = try fromNetrc(entries.filter { $0.machine == registry }) { return found }
        if let found = try fromNetrc(entries.filter { $0.machine == host || $0.machine == "[" + host + "]" }) { return found }
        if let found = try dockerCredential(for: registry, user: user) { return found }
        return try fromNetrc(entries.filter { $0.machine.isEmpty })
    }

    /// The netrc entry named exactly for a host (no `default`, no Docker entry): Docker Hub's
    /// token service's own credentials (`machine auth.docker.io`, as enroot's documentation
    /// writes them).
    public func netrcCredential(forHost host: String, user: String? = nil) throws(Diagnostic) -> Credential? {
        guard let path = netrcPath, let text = try? FileReader.readText(path) else { return nil }
        let named = Self.parseNetrc(text).filter { $0.machine == host }
        guard let entry = named.first(where: { user == nil || $0.login == user }) else { return nil }
        return Credential(user: entry.login, password: try expand(entry.password, file: path, machine: entry.machine), source: path)
    }

    /// Why credentials files that exist cannot be used (unreadable, not a file), and credential
    /// helpers of Docker's config that are not run: for the message when access is refused.
    public func problems(for registry: String) -> [String] {
        var result: [String] = []
        for path in [netrcPath, dockerConfigPath].compactMap({ $0 }) {
            switch FileReader.kind(of: path) {
            case .missing: continue
            case .regularFile:
                if let reason = FileReader.unreadable(path) { result.append("\(path) cannot be read (\(reason))") }
            case .directory, .other: result.append("\(path) is not a file")
            case .inaccessible(let reason): result.append("\(path) cannot be reached (\(reason))")
            }
        }
        if let path = dockerConfigPath, let text = try? FileReader.readText(path),
            let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        {
            if let helper = (object["credHelpers"] as? [String: Any])?[registry] as? String {
                result.append("\(path) names the credential helper docker-credential-\(helper) for \(registry), which img-pull does not run")
            } else if let store = object["credsStore"] as? String {
                result.append("\(path) names the credential store docker-credential-\(store), which img-pull does not run")
            }
        }
        return result
    }

    /// The entry of Docker's config.json (`auths`) for a registry.
    func dockerCredential(for registry: String, user: String?) throws(Diagnostic) -> Credential? {
        guard let path = dockerConfigPath, let text = try? FileReader.readText(path) else { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw Diagnostic(
                kind: .invalid, file: path, message: "not a valid JSON object: its registry credentials cannot be read",
                hint: "fix the file (docker login writes it), or move it away")
        }
        guard let auths = object["auths"] as? [String: Any] else { return nil }
        // Keys name a registry as a host[:port], with or without a scheme and a path
        // (https://host/v1/, http://host:5000/v2/); Docker Hub under its old names too.
        let aliases: Set<String> = registry == "registry-1.docker.io" ? ["registry-1.docker.io", "index.docker.io", "docker.io"] : [registry]
        func hostOf(_ key: String) -> String {
            var rest = Substring(key)
            for scheme in ["https://", "http://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
            return String(rest.prefix { $0 != "/" })
        }
        for key in auths.keys.sorted() where aliases.contains(hostOf(key)) {
            guard let entry = auths[key] as? [String: Any] else { continue }
            if let auth = entry["auth"] as? String, let decoded = Data(base64Encoded: auth),
                let pair = String(data: decoded, encoding: .utf8), let colon = pair.firstIndex(of: ":")
            {
                let found = Credential(user: String(pair[..<colon]), password: String(pair[pair.index(after: colon)...]), source: path)
                if user == nil || user == found.user { return found }
            }
            if let name = entry["username"] as? String, let password = entry["password"] as? String {
                if user == nil || user == name { return Credential(user: name, password: password, source: path) }
            }
        }
        return nil
    }

    /// enroot lets a password be `$VAR` (evaluated by its shell); here `$VAR` and `${VAR}` are
    /// read from the environment, nothing is executed.
    func expand(_ password: String, file: String, machine: String) throws(Diagnostic) -> String {
        guard password.hasPrefix("$") else { return password }
        var name = String(password.dropFirst())
        if name.hasPrefix("{") && name.hasSuffix("}") { name = String(name.dropFirst().dropLast()) }
        guard let value = environment[name] else {
            throw Diagnostic(
                kind: .denied, file: file, message: "the password for machine \(machine) is $\(name), and \(name) is not set",
                hint: "export \(name) before the pull (or write the password itself in the file)")
        }
        return value
    }

    struct NetrcEntry: Equatable {
        var machine: String
        var login: String
        var password: String
    }

    /// netrc, as curl reads it (enroot hands the file to curl): `machine M login L password P`
    /// tokens separated by spaces, tabs and line ends (LF or CRLF), over any lines; a token in
    /// double quotes may hold spaces, with \" \\ \n \r \t escapes; `default` (machine "") applies to a host
    /// no machine entry names; a line starting with # is a comment; `macdef` definitions are
    /// skipped to the next empty line.
    static func parseNetrc(_ text: String) -> [NetrcEntry] {
        var tokens: [String] = []
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let line = lines.popFirst() {
            var scalars = line[...]
            while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
            if scalars.first == "#" { continue }
            while !scalars.isEmpty {
                guard let first = scalars.first else { break }
                if first == " " || first == "\t" || first == "\r" {
                    scalars = scalars.dropFirst()
                    continue
                }
                var token = String.UnicodeScalarView()
                if first == "\"" {
                    scalars = scalars.dropFirst()
                    while let next = scalars.popFirst(), next != "\"" {
                        if next == "\\", let escaped = scalars.popFirst() {
                            switch escaped {
                            case "n": token.append("\n")
                            case "r": token.append("\r")
                            case "t": token.append("\t")
                            default: token.append(escaped)
                            }
                        } else {
                            token.append(next)
                        }
                    }
                } else {
                    while let next = scalars.first, next != " ", next != "\t", next != "\r" {
                        token.append(next)
                        scalars = scalars.dropFirst()
                    }
                }
                let word = String(token)
                tokens.append(word)
                if word == "macdef" && first != "\"" {
                    // A macro: its name on this line, its body up to an empty line.
                    while let body = lines.first, !body.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { lines = lines.dropFirst() }
                    tokens.removeLast()
                    break
                }
            }
        }
        var entries: [NetrcEntry] = []
        var current: NetrcEntry?
        var i = 0
        while i < tokens.count {
            let key = tokens[i]
            let value = i + 1 < tokens.count ? tokens[i + 1] : ""
            switch key {
            case "machine":
                if let c = current { entries.append(c) }
                current = NetrcEntry(machine: value, login: "", password: "")
                i += 2
            case "default":
                if let c = current { entries.append(c) }
                current = NetrcEntry(machine: "", login: "", password: "")
                i += 1
            case "login":
                current?.login = value
                i += 2
            case "password":
                current?.password = value
                i += 2
            default:
                i += 1
            }
        }
        if let c = current { entries.append(c) }
        return entries
    }
}
