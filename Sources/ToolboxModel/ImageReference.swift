/// A registry image reference, normalised as enroot does (spec.md section 2.2): the enroot form
/// `[USER@][REGISTRY#]IMAGE[:TAG][@sha256:DIGEST]` and the docker form
/// `[REGISTRY/]IMAGE[:TAG][@sha256:DIGEST]`, where the first path component is a registry when it
/// contains `.` or `:` or is `localhost`, and otherwise a Docker Hub namespace.
public struct ImageReference: Codable, Sendable, Equatable, Hashable {
    /// The registry every Docker Hub alias is normalised to.
    public static let dockerHub = "registry-1.docker.io"
    static let dockerHubAliases: Set<String> = ["docker.io", "index.docker.io", "registry-1.docker.io"]

    /// The normalised reference: `registry/repository[:tag][@digest]`.
    public var reference: String
    /// Registry host, with its port when one was given.
    public var registry: String
    /// Repository path in the registry (`library/ubuntu` for Docker Hub's official images).
    public var repository: String
    /// The tag; `latest` when neither tag nor digest was given, nil when only a digest was.
    public var tag: String?
    /// `sha256:<64 hex>` when the reference pins a manifest digest (it wins over the tag).
    public var digest: String?
    /// The registry user named in the enroot form (`USER@...`), if any.
    public var user: String?

    public init(registry: String, repository: String, tag: String?, digest: String?, user: String? = nil) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.user = user
        var text = "\(registry)/\(repository)"
        if let tag { text += ":\(tag)" }
        if let digest { text += "@\(digest)" }
        self.reference = text
    }

    enum CodingKeys: String, CodingKey {
        case reference, registry, repository, tag, digest, user
    }

    /// `tag` and `digest` are always written (null when absent); `user` only when given.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(reference, forKey: .reference)
        try container.encode(registry, forKey: .registry)
        try container.encode(repository, forKey: .repository)
        try container.encode(tag, forKey: .tag)
        try container.encode(digest, forKey: .digest)
        try container.encodeIfPresent(user, forKey: .user)
    }

    /// Why a string is not an image reference, and what to write instead.
    public struct ParseError: Error, Sendable, Equatable {
        public var message: String
        public var hint: String?
    }

    /// The reference with the password of a `USER:PASSWORD@` part replaced by `***`.
    public static func redacted(_ text: String) -> String {
        guard let at = text.firstIndex(of: "@") else { return text }
        let head = text[..<at]
        let start = head.firstRange(of: "://")?.upperBound ?? head.startIndex
        let user = head[start...]
        guard !user.contains("/"), !user.contains("#"), let colon = user.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }

    /// Parses and normalises a registry reference. Local paths (starting with `/` or `.`) are not
    /// references; callers handle them before calling this.
    public static func parse(_ text: String) throws(ParseError) -> ImageReference {
        let formHint = "write REGISTRY/REPOSITORY:TAG (docker form) or REGISTRY#REPOSITORY:TAG (enroot form), e.g. nvcr.io/nvidia/pytorch:24.01-py3"
        guard !text.isEmpty else { throw ParseError(message: "empty image reference", hint: formHint) }
        // Messages never repeat a password written into the reference (USER:PASSWORD@...).
        let shown = redacted(text)
        if let bad = text.unicodeScalars.first(where: { $0.value < 0x21 || $0.value > 0x7e }) {
            let what = bad.properties.isWhitespace ? "whitespace" : "a character that is not printable ASCII"
            throw ParseError(message: "image reference \"\(shown)\" contains \(what)", hint: formHint)
        }
        var rest = Substring(text)
        // enroot's URI form: docker://REFERENCE is the same reference; other schemes are not registries.
        if let scheme = rest.firstRange(of: "://") {
            guard rest[..<scheme.lowerBound] == "docker" else {
                throw ParseError(
                    message: "unsupported scheme \"\(rest[..<scheme.lowerBound])://\" in image reference \"\(shown)\"",
                    hint: "name a registry image (docker:// is optional) or give the path of a squashfs file")
            }
            rest = rest[scheme.upperBound...]
        }

        // Digest: everything after "@sha256:" (or another algorithm, which we reject).
        var digest: String?
        if let at = rest.lastIndex(of: "@"), Self.looksLikeDigest(rest[rest.index(after: at)...]) {
            let candidate = rest[rest.index(after: at)...]
            guard candidate.hasPrefix("sha256:") else {
                throw ParseError(
                    message: "unsupported digest \"\(candidate)\" in image reference \"\(shown)\"",
                    hint: "only sha256 digests are supported: @sha256:<64 hex digits>")
            }
            guard Self.isSHA256Digest(candidate) else {
                throw ParseError(
                    message: "invalid digest \"\(candidate)\" in image reference \"\(shown)\"",
                    hint: "a digest is sha256: followed by 64 lowercase hexadecimal digits")
            }
            digest = String(candidate)
            rest = rest[..<at]
        }

        // User: text before the first "@".
        var user: String?
        if let at = rest.firstIndex(of: "@") {
            let name = rest[..<at]
            guard !name.isEmpty, !name.contains("/"), !name.contains("#") else {
                // What follows the '@' may be USER:PASSWORD written at the wrong end: not shown.
                let before = text.firstIndex(of: "@").map { String(text[..<$0]) + "@..." } ?? shown
                throw ParseError(message: "invalid user in image reference \"\(before)\"", hint: "write USER@REGISTRY#IMAGE:TAG")
            }
            guard !name.contains(":") else {
                throw ParseError(
                    message: "a password in image reference \"\(shown)\"",
                    hint: "write USER@REGISTRY#IMAGE:TAG and put the password into the credentials file (machine REGISTRY login USER password ...), which img-pull reads")
            }
            user = String(name)
            rest = rest[rest.index(after: at)...]
        }

        // Registry: enroot "#" form, else docker form.
        var registry: String
        var remainder: Substring
        if let hash = rest.firstIndex(of: "#") {
            registry = String(rest[..<hash])
            remainder = rest[rest.index(after: hash)...]
            guard !registry.isEmpty else {
                throw ParseError(message: "empty registry before '#' in image reference \"\(shown)\"", hint: formHint)
            }
            guard !remainder.contains("#") else {
                throw ParseError(message: "more than one '#' in image reference \"\(shown)\"", hint: formHint)
            }
        } else if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" {
                registry = String(first)
                remainder = rest[rest.index(after: slash)...]
            } else {
                registry = dockerHub
                remainder = rest
            }
        } else {
            registry = dockerHub
            remainder = rest
        }
        try validateRegistry(registry, in: shown)
        if dockerHubAliases.contains(registry) { registry = dockerHub }

        // Tag: after the last ":" of the last path component.
        var tag: String?
        let lastComponentStart = remainder.lastIndex(of: "/").map { remainder.index(after: $0) } ?? remainder.startIndex
        if let colon = remainder[lastComponentStart...].firstIndex(of: ":") {
            tag = String(remainder[remainder.index(after: colon)...])
            remainder = remainder[..<colon]
        }
        var repository = String(remainder)
        try validateRepository(repository, in: shown)
        if let tag { try validateTag(tag, in: shown) }
        if registry == dockerHub && !repository.contains("/") { repository = "library/" + repository }
        if tag == nil && digest == nil { tag = "latest" }
        return ImageReference(registry: registry, repository: repository, tag: tag, digest: digest, user: user)
    }

    /// Whether `text` is `sha256:` and 64 lowercase hexadecimal digits (the only digests used).
    public static func isSHA256Digest(_ text: some StringProtocol) -> Bool {
        let hex = text.dropFirst("sha256:".count)
        return text.hasPrefix("sha256:") && hex.count == 64 && hex.allSatisfy { $0.isASCII && $0.isHexDigit && !$0.isUppercase }
    }

    /// `sha256:...`, `sha512:...`: an algorithm name "sha<digits>" and a colon (a user name or an
    /// image with a tag, as in `alice@ubuntu:24.04`, does not match).
    static func looksLikeDigest(_ text: Substring) -> Bool {
        guard text.hasPrefix("sha"), let colon = text.firstIndex(of: ":") else { return false }
        let bits = text[text.index(text.startIndex, offsetBy: 3)..<colon]
        return !bits.isEmpty && bits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    static func validateRegistry(_ registry: String, in text: String) throws(ParseError) {
        // An IPv6 address in brackets, as in a URL and in Docker's references: [fd00::5]:5000.
        let host: Substring
        let port: Substring?
        let validHost: Bool
        if registry.hasPrefix("["), let close = registry.firstIndex(of: "]") {
            host = registry[registry.index(after: registry.startIndex)..<close]
            let after = registry[registry.index(after: close)...]
            port = after.isEmpty ? nil : after.hasPrefix(":") ? after.dropFirst() : "x"
            validHost = host.filter({ $0 == ":" }).count >= 2
                && host.allSatisfy { $0.isASCII && ($0.isHexDigit || $0 == ":" || $0 == ".") }
        } else {
            let parts = registry.split(separator: ":", omittingEmptySubsequences: false)
            host = parts[0]
            port = parts.count == 1 ? nil : parts.count == 2 ? parts[1] : "x"
            // Host labels as DNS has them: letters, digits and '-', not starting or ending with '-'.
            validHost = !host.isEmpty && host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
                && host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
                    !label.isEmpty && label.first != "-" && label.last != "-"
                }
        }
        let validPort = port.map { port in
            !port.isEmpty && port.allSatisfy { $0.isASCII && $0.isNumber } && (Int(port).map { (1...65535).contains($0) } ?? false)
        } ?? true
        guard validHost, validPort else {
            throw ParseError(
                message: "invalid registry \"\(registry)\" in image reference \"\(text)\"",
                hint: "a registry is a host name with an optional :PORT, e.g. nvcr.io, localhost:5000 or [fd00::5]:5000")
        }
    }

    /// The host of a registry, without its port (and an IPv6 address without its brackets): the
    /// machine a credentials file names.
    public static func host(ofRegistry registry: String) -> String {
        if registry.hasPrefix("["), let close = registry.firstIndex(of: "]") {
            return String(registry[registry.index(after: registry.startIndex)..<close])
        }
        return registry.split(separator: ":").first.map(String.init) ?? registry
    }

    /// Repository components: lowercase alphanumerics separated by ".", "_", "__" or "-" runs.
    static func validateRepository(_ repository: String, in text: String) throws(ParseError) {
        let hint = "repository names are lowercase letters, digits and . _ - separated by /, e.g. nvidia/pytorch"
        guard !repository.isEmpty else {
            throw ParseError(message: "missing repository in image reference \"\(text)\"", hint: hint)
        }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false) {
            // Separators between alphanumeric runs: one '.', one or two '_', or any number of '-'.
            let separators = component.split(whereSeparator: { $0.isLowercase || $0.isNumber })
            let validSeparators = separators.allSatisfy { run in run == "." || run == "_" || run == "__" || run.allSatisfy { $0 == "-" } }
            let allowed = validSeparators && component.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || "._-".contains($0) }
            let edges = component.first.map { $0.isLowercase || $0.isNumber } == true
                && component.last.map { $0.isLowercase || $0.isNumber } == true
            guard allowed, edges else {
                let upper = component.contains(where: \.isUppercase)
                throw ParseError(
                    message: "invalid repository \"\(repository)\" in image reference \"\(text)\""
                        + (upper ? ": uppercase letters are not allowed" : ""),
                    hint: hint)
            }
        }
    }

    static func validateTag(_ tag: String, in text: String) throws(ParseError) {
        let valid = !tag.isEmpty && tag.count <= 128
            && tag.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
            && tag.first.map { $0 != "." && $0 != "-" } == true
        guard valid else {
            throw ParseError(
                message: "invalid tag \"\(tag)\" in image reference \"\(text)\"",
                hint: "a tag is up to 128 letters, digits, '.', '_' and '-', not starting with '.' or '-'")
        }
    }
}
