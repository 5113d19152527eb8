#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CCurl
import OCI
import ToolboxCore
import ToolboxModel

/// Talks to one repository of one registry over the OCI distribution API: authentication
/// (anonymous, Basic, Bearer tokens from the WWW-Authenticate challenge, renewed when they expire),
/// retries with backoff, manifests and blobs.
public final class RegistryClient {
    public struct Options: Sendable {
        public var allowHTTP = false
        public var retries = 4
        /// Seconds before the first retry; doubled for each following one.
        public var backoff = 0.5
        public var http = HTTPEngine.Options()

        public init() {}
    }

    public let registry: String
    public let repository: String
    public let options: Options
    let engine: HTTPEngine
    /// Token requests run on their own engine: they happen in the middle of a parallel layer
    /// download, whose engine is busy (its event loop is not re-entrant).
    let tokenEngine: HTTPEngine
    let credentials: CredentialStore
    let user: String?
    /// Told before each retry of a request (a line for people).
    public var onRetry: ((String) -> Void)?
    /// The Authorization header line in use, if any.
    var authorization: String?
    var usedCredential: Credential?

    public init(registry: String, repository: String, user: String?, credentials: CredentialStore, options: Options) {
        self.registry = registry
        self.repository = repository
        self.user = user
        self.credentials = credentials
        self.options = options
        var http = options.http
        http.allowHTTP = options.allowHTTP
        self.engine = HTTPEngine(options: http)
        self.tokenEngine = HTTPEngine(options: http)
    }

    var scheme: String { options.allowHTTP ? "http" : "https" }

    public func url(_ path: String) -> String {
        "\(scheme)://\(registry)/v2/\(repository)/\(path)"
    }

    /// How often a request may get a new token for a refused one (tokens that expire during a long
    /// pull), apart from its retries for network faults.
    static let maximumRenewals = 10

    /// The host[:port] of a URL, lowercased.
    static func authority(_ url: String) -> String {
        let rest = url.range(of: "://").map { url[$0.upperBound...] } ?? url[...]
        return rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }.lowercased()
    }

    /// Whether the registry itself answered (not the storage it redirected a blob to): only its
    /// challenges are answered with credentials. Without a redirect it did; after one, only when
    /// the address curl ended at has the registry's host and port as written (a spelling that
    /// differs counts as another host: nothing is sent).
    func answeredByRegistry(_ transfer: HTTPTransfer) -> Bool {
        transfer.redirects == 0 || Self.authority(transfer.effectiveURL) == Self.authority(url(""))
    }

    // MARK: Errors

    func unreachable(_ transfer: HTTPTransfer) -> Diagnostic {
        // Not the network's fault: trying again later does not help (65, not 75).
        switch transfer.curlCode {
        case CURLE_UNSUPPORTED_PROTOCOL:
            return Diagnostic(
                kind: .invalid,
                message: "registry \(registry) sent img-pull to an address it does not follow (\(transfer.transportError)); nothing was fetched from there",
                hint: options.allowHTTP
                    ? "only http and https addresses are followed; the registry's redirect is wrong: tell its operators"
                    : "only https is spoken: a redirect to plain http needs --allow-http (or ENROOT_ALLOW_HTTP=yes), only if you trust the network")
        case CURLE_TOO_MANY_REDIRECTS:
            return Diagnostic(
                kind: .invalid, message: "registry \(registry) redirected again and again (\(transfer.transportError))",
                hint: "a redirect loop on the registry's side: tell its operators")
        default:
            break
        }
        var hint = "check the registry name, the network and any proxy settings (https_proxy)"
        let text = transfer.transportError
        if !options.allowHTTP && text.contains("certificate") {
            hint = "the registry's certificate is not trusted: give its CA certificate with --ca-file, or add it to the system's trust store"
        } else if !options.allowHTTP && (text.contains("wrong version number") || text.contains("SSL")) {
            hint = "the registry may speak plain HTTP: use --allow-http (or ENROOT_ALLOW_HTTP=yes) if you trust it"
        }
        return Diagnostic(kind: .network, message: "cannot reach registry \(registry): \(text)", hint: hint)
    }

    func httpError(_ transfer: HTTPTransfer, what: String) -> Diagnostic {
        let detail = Self.errorDetail(transfer.body)
        let suffix = detail.isEmpty ? "" : " (\(detail))"
        switch transfer.status {
        case 404:
            return Diagnostic(
                kind: .notFound, message: "\(what) not found in \(registry)/\(repository)\(suffix)",
                hint: "check the repository, tag and digest; the registry answered 404")
        case 401 where !answeredByRegistry(transfer), 403 where !answeredByRegistry(transfer):
            // The storage a blob was redirected to: no credentials went there (an expired or
            // wrong redirect, not the user's password).
            return Diagnostic(
                kind: .network,
                message: "\(what): registry \(registry) sent the download to \(Self.authority(transfer.effectiveURL)), which refused it (\(transfer.status))",
                hint: "the registry's redirect may have expired: pull again; if it goes on, tell the registry's operators")
        case 401, 403:
            return authenticationError(transfer)
        case 429:
            return Diagnostic(kind: .network, message: "registry \(registry) is rate-limiting requests (429) for \(what) after \(options.retries) retries", hint: "wait and try again, or log in for a higher limit")
        default:
            return Diagnostic(kind: .network, message: "registry \(registry) answered \(transfer.status) for \(what)\(suffix)", hint: transfer.status >= 500 ? "a server error: try again later" : nil)
        }
    }

    func authenticationError(_ transfer: HTTPTransfer) -> Diagnostic {
        let files = credentials.consultedFiles
        if let used = usedCredential {
            return Diagnostic(
                kind: .denied,
                message: "registry \(registry) refused the credentials of user '\(used.user)' from \(used.source) (\(transfer.status))",
                hint: used.source == credentials.dockerConfigPath
                    ? "check the entry for \(registry) under \"auths\" in \(used.source) (docker login \(registry) writes it)"
                    : "check the login and password for machine \(ImageReference.host(ofRegistry: registry)) in \(used.source)")
        }
        var looked = files.isEmpty ? "no credentials file exists (\([credentials.netrcPath, credentials.dockerConfigPath].compactMap { $0 }.joined(separator: ", ")))" : "none for this registry\(user.map { " and user '\($0)'" } ?? "") in \(files.joined(separator: ", "))"
        let problems = credentials.problems(for: registry)
        if !problems.isEmpty { looked += "; " + problems.joined(separator: "; ") }
        return Diagnostic(
            kind: .denied, message: "registry \(registry) requires authentication for \(repository) (\(transfer.status)); \(looked)",
            hint: "add 'machine \(ImageReference.host(ofRegistry: registry)) login USER password PASSWORD' to \(credentials.netrcPath ?? "~/.config/enroot/.credentials")")
    }

    /// The message of a registry error document (`{"errors":[{"code","message"}]}`).
    static func errorDetail(_ body: [UInt8]) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let errors = object["errors"] as? [[String: Any]]
        else { return "" }
        return errors.compactMap { e in
            let code = e["code"] as? String ?? ""
            let message = e["message"] as? String ?? ""
            return [code, message].filter { !$0.isEmpty }.joined(separator: ": ")
        }.joined(separator: "; ")
    }

    // MARK: Authentication

    /// Answers a 401 challenge: a Bearer token from the realm, or Basic credentials. False when
    /// there is nothing new to try.
    func authenticate(_ transfer: HTTPTransfer) throws(Diagnostic) -> Bool {
        // A challenge from the storage a blob was redirected to gets nothing: the user's
        // credentials are for the registry and its token service only.
        guard answeredByRegistry(transfer) else { return false }
        // Bearer when offered (a token, anonymous or for the credentials), else Basic: as Docker.
        let offered = Challenge.parse(transfer.headers("WWW-Authenticate"))
        guard let challenge = offered.first(where: { $0.scheme.lowercased() == "bearer" && $0.parameters["realm"] != nil })
            ?? offered.first(where: { $0.scheme.lowercased() == "basic" }) ?? offered.first
        else { return false }
        let credential = try credentials.credential(for: registry, user: user)
        switch challenge.scheme.lowercased() {
        case "basic":
            guard let credential else { return false }
            if usedCredential != nil && authorization == credential.basicHeader { return false }
            usedCredential = credential
            authorization = credential.basicHeader
            return true
        case "bearer":
            guard var realm = challenge.parameters["realm"] else { return false }
            // A realm that is a path on the registry itself (`realm="/token"`, as some registries
            // behind a proxy write it): on the registry's own address.
            if realm.hasPrefix("/") && !realm.hasPrefix("//") { realm = "\(scheme)://\(registry)\(realm)" }
            // Credentials go only where the registry's own scheme allows (the engine enforces it
            // too; this says it clearly).
            let realmScheme = realm.prefix { $0 != ":" }.lowercased()
            guard realmScheme == "https" || (realmScheme == "http" && options.allowHTTP) else {
                throw Diagnostic(
                    kind: .invalid,
                    message: "\(registry) asks for a token from \(realm), which is not an \(options.allowHTTP ? "http or https" : "https") address; nothing was sent there",
                    hint: realmScheme == "http"
                        ? "a token service over plain HTTP would see the credentials: use --allow-http (or ENROOT_ALLOW_HTTP=yes) only if you trust the network"
                        : "the registry's WWW-Authenticate challenge is wrong; tell its operators")
            }
            var query: [String] = []
            if let service = challenge.parameters["service"] { query.append("service=" + Self.escape(service)) }
            query.append("scope=" + Self.escape(challenge.parameters["scope"] ?? "repository:\(repository):pull"))
            let tokenURL = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
            // An address with a user part (https://host@elsewhere/) is refused: it would take the
            // credentials to another host than the one it seems to name.
            let realmHost = Self.authority(realm)
            guard !realmHost.contains("@") else {
                throw Diagnostic(
                    kind: .invalid, message: "\(registry) asks for a token from an address with a user part (\(realmHost)); nothing was sent there",
                    hint: "the registry's WWW-Authenticate challenge is wrong or hostile; tell its operators")
            }
            // Docker Hub's token service gets its own netrc entry where there is one (machine
            // auth.docker.io, as enroot's documentation writes it). Only for Docker Hub: a token
            // made with another host's credentials would go to whichever registry asked for it.
            var tokenCredential = credential
            if registry == ImageReference.dockerHub, realmHost == "auth.docker.io",
                let own = try credentials.netrcCredential(forHost: realmHost, user: user)
            {
                tokenCredential = own
            }
            var attempt = 0
            while true {
                let request = HTTPTransfer(url: tokenURL, headers: tokenCredential.map { [$0.basicHeader] } ?? [], sink: .memory(limit: 1 << 20))
                usedCredential = tokenCredential
                tokenEngine.perform(request)
                if request.failedForGood {
                    throw Diagnostic(kind: .network, message: "cannot reach the token service of \(registry) at \(realm): \(request.transportError)", hint: unreachable(request).hint)
                }
                if request.failedToConnect || request.status == 429 || request.status >= 500 {
                    attempt += 1
                    if attempt > options.retries {
                        if request.failedToConnect {
                            throw Diagnostic(kind: .network, message: "cannot reach the token service of \(registry) at \(realm): \(request.transportError)")
                        }
                        throw Diagnostic(kind: .network, message: "the token service of \(registry) answered \(request.status)")
                    }
                    retrying(attempt: attempt, transfer: request, what: "a token from \(realm)")
                    continue
                }
                if request.status == 401 || request.status == 403 { throw authenticationError(request) }
                guard request.status == 200,
                    let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
                    let token = (object["token"] as? String) ?? (object["access_token"] as? String), !token.isEmpty
                else {
                    // A 200 without a token (a proxy's login page): no network trouble to wait out.
                    throw Diagnostic(
                        kind: request.status == 200 ? .invalid : .network,
                        message: "the token service of \(registry) answered \(request.status) without a token",
                        hint: request.status == 200
                            ? "its answer is not a token service's JSON ({\"token\": ...}): a proxy or a login page answered for \(realm)" : nil)
                }
                let header = "Authorization: Bearer " + token
                // The same token refused again: nothing new to try.
                if header == authorization && transfer.status == 401 && (transfer.attempt > 1 || transfer.renewals > 0) { return false }
                authorization = header
                return true
            }
        default:
            return false
        }
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? text
    }

    /// Says why a request is tried again and when, then sleeps: exponential backoff, or what
    /// Retry-After asks (at most 30 s).
    func retrying(attempt: Int, transfer: HTTPTransfer, what: String) {
        let wait = delay(attempt: attempt, transfer: transfer)
        let reason = transfer.failedToConnect ? transfer.transportError : "the registry answered \(transfer.status)"
        onRetry?("\(what): \(reason); trying again in \(String(format: "%.1f", wait)) s (attempt \(attempt + 1) of \(options.retries + 1))")
        usleep(UInt32(wait * 1_000_000))
    }

    func delay(attempt: Int, transfer: HTTPTransfer?) -> Double {
        if let after = transfer?.header("Retry-After"), let seconds = Double(after) { return min(30, max(0, seconds)) }
        return min(30, options.backoff * Double(1 << min(attempt - 1, 10)))
    }

    /// Whether an attempt failed in a way worth retrying: no answer, a broken transfer, 429, 5xx
    /// (not an untrusted certificate or another failure that would come again).
    static func isTransient(_ transfer: HTTPTransfer) -> Bool {
        if transfer.sinkError != nil { return false }
        if transfer.failedToConnect { return !transfer.failedForGood }
        return transfer.status == 429 || transfer.status >= 500
    }

    // MARK: Requests

    /// One request with authentication and retries.
    func send(_ make: () -> HTTPTransfer, what: String) throws(Diagnostic) -> HTTPTransfer {
        var attempt = 1
        var authenticated = false
        while true {
            let transfer = make()
            transfer.attempt = attempt
            if let authorization { transfer.headers.append(authorization) }
            engine.perform(transfer)
            if let error = transfer.sinkError { throw error }
            if transfer.failedForGood { throw unreachable(transfer) }
            if transfer.status == 401 && !authenticated {
                authenticated = true
                if try authenticate(transfer) { continue }
            }
            if Self.isTransient(transfer) {
                if attempt > options.retries {
                    if transfer.failedToConnect { throw unreachable(transfer) }
                    throw httpError(transfer, what: what)
                }
                retrying(attempt: attempt, transfer: transfer, what: "\(what) from \(registry)")
                attempt += 1
                continue
            }
            return transfer
        }
    }

    /// A manifest or index by tag or digest: its bytes and media type.
    public func manifest(_ reference: String) throws(Diagnostic) -> (bytes: [UInt8], mediaType: String) {
        let what = reference.hasPrefix("sha256:") ? "manifest \(reference)" : "tag '\(reference)'"
        let transfer = try send({
            HTTPTransfer(url: url("manifests/\(reference)"), headers: ["Accept: " + MediaType.acceptedManifests.joined(separator: ", ")], sink: .memory(limit: 4 << 20))
        }, what: what)
        guard transfer.status == 200 else { throw httpError(transfer, what: what) }
        let declared = (try? JSONSerialization.jsonObject(with: Data(transfer.body)) as? [String: Any])?["mediaType"] as? String
        let contentType = transfer.header("Content-Type")?.split(separator: ";").first.map { String($0).trimmingCharacters(in: .whitespaces) }
        return (transfer.body, declared ?? contentType ?? "")
    }

    /// A small blob (the image config) into memory.
    public func smallBlob(_ digest: Digest, limit: Int = 16 << 20) throws(Diagnostic) -> [UInt8] {
        let what = "blob \(digest)"
        let transfer = try send({ HTTPTransfer(url: url("blobs/\(digest)"), sink: .memory(limit: limit)) }, what: what)
        guard transfer.status == 200 else { throw httpError(transfer, what: what) }
        guard Digest(of: transfer.body) == digest else {
            throw Diagnostic(kind: .invalid, message: "blob \(digest) from \(registry) does not match its digest", hint: "the registry or a proxy served corrupt data; nothing was cached")
        }
        return transfer.body
    }
}

/// One challenge of a `WWW-Authenticate` header: `Bearer realm="...",service="...",scope="..."`
/// (RFC 7235: auth-params, values quoted or not, blanks allowed around `=`).
struct Challenge {
    var scheme: String
    var parameters: [String: String] = [:]

    /// Every challenge of these header values, in order: a registry may offer several, in one
    /// header (`Basic realm="r", Bearer realm="..."`) or in several.
    static func parse(_ headers: [String]) -> [Challenge] {
        var challenges: [Challenge] = []
        for header in headers {
            var rest = Substring(header)
            let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
            while true {
                rest = rest.drop { blank($0) || $0 == "," }
                let token = rest.prefix { !blank($0) && $0 != "=" && $0 != "," }
                guard !token.isEmpty else { break }
                rest = rest.dropFirst(token.count).drop(while: blank)
                guard rest.first == "=", !challenges.isEmpty else {
                    // A scheme: a new challenge (a token68 after it, as in "Basic abc==", is skipped).
                    challenges.append(Challenge(scheme: String(token)))
                    continue
                }
                rest = rest.dropFirst().drop(while: blank)
                var value = ""
                if rest.first == "\"" {
                    rest = rest.dropFirst()
                    while let c = rest.first, c != "\"" {
                        if c == "\\" { rest = rest.dropFirst() }
                        if let d = rest.first { value.append(d) }
                        rest = rest.dropFirst()
                    }
                    rest = rest.dropFirst()
                } else {
                    value = String(rest.prefix { !blank($0) && $0 != "," })
                    rest = rest.dropFirst(value.count)
                }
                challenges[challenges.count - 1].parameters[token.lowercased()] = value
            }
        }
        return challenges
    }
}
