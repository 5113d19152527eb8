#if canImport(Glibc)
import Glibc
#endif
import CCurl
import CToolboxShim
import Dispatch
import Foundation
import OCI
import ToolboxCore

/// One HTTP request and, once it ran, its response. A transfer is one attempt; retries and
/// authentication make new attempts (new transfers) for the same request.
public final class HTTPTransfer: @unchecked Sendable {
    public enum Method: String, Sendable {
        case get = "GET", head = "HEAD"
    }

    /// Where the body goes: memory (manifests, tokens, error bodies) or a blob's partial file.
    public enum Sink {
        case memory(limit: Int)
        case blob(BlobWriter)
    }

    public var url: String
    public var method: Method
    public var headers: [String]
    public var sink: Sink
    /// Send `Range: bytes=<offset>-` (resuming a blob).
    public var rangeStart: Int64 = 0
    /// Free for the caller: which blob, how many attempts so far.
    public var tag: Int = 0
    public var attempt = 1
    /// Free for the caller: how many times a refused token was renewed for this request.
    public var renewals = 0

    // The response.
    public internal(set) var status = 0
    public internal(set) var responseHeaders: [(name: String, value: String)] = []
    public internal(set) var body: [UInt8] = []
    public internal(set) var curlCode = CURLE_OK
    public internal(set) var curlMessage = ""
    /// The host that finally answered (after redirects).
    public internal(set) var effectiveURL = ""
    /// How many redirects curl followed for this answer.
    public internal(set) var redirects = 0
    /// Set when the sink refused bytes (disk full, blob too large).
    public internal(set) var sinkError: Diagnostic?
    /// Bytes received in this attempt.
    public internal(set) var received: Int64 = 0
    /// The blob's bytes so far: what the partial file held, then this attempt's. A body that goes
    /// past the size the blob's descriptor declares (its writer's `expectedSize`) is cut off: a
    /// broken or hostile server cannot fill the disk.
    var blobBytes: Int64 = 0

    var started = false
    let writeQueue = DispatchQueue(label: "toolbox.blob-writer")
    let pendingLock = NSLock()
    var pending = 0
    var asyncError: Diagnostic?
    /// Paused by the write callback because too much is queued.
    var paused = false
    /// How much may wait for the writer before the transfer is paused.
    static let queueLimit = 64 << 20
    var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    var headerList: UnsafeMutablePointer<curl_slist>?
    var handle: UnsafeMutableRawPointer?

    public init(url: String, method: Method = .get, headers: [String] = [], sink: Sink = .memory(limit: 16 << 20)) {
        self.url = url
        self.method = method
        self.headers = headers
        self.sink = sink
    }

    /// The first value of a response header (name compared case-insensitively).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return responseHeaders.first { $0.name == lower }?.value
    }

    /// Every value of a response header (a header may come several times).
    public func headers(_ name: String) -> [String] {
        let lower = name.lowercased()
        return responseHeaders.filter { $0.name == lower }.map(\.value)
    }

    /// True when curl itself failed (no HTTP answer, or a broken one).
    public var failedToConnect: Bool { curlCode != CURLE_OK && sinkError == nil }

    /// True when curl failed in a way that trying again cannot mend: a certificate that is not
    /// trusted or not readable, a server that does not speak TLS, a protocol that is not allowed.
    public var failedForGood: Bool {
        guard failedToConnect else { return false }
        switch curlCode {
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
            CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT,
            CURLE_TOO_MANY_REDIRECTS:
            return true
        case CURLE_SSL_CONNECT_ERROR:
            // A plain HTTP server answering the TLS handshake; other handshake failures (a reset)
            // may pass.
            return transportError.contains("wrong version number")
        default:
            return false
        }
    }

    /// The curl error, in words.
    public var transportError: String {
        curlMessage.isEmpty ? String(cString: curl_easy_strerror(curlCode)) : curlMessage
    }

    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        received += Int64(bytes.count)
        switch sink {
        case .memory(let limit):
            if body.count + bytes.count > limit {
                sinkError = Diagnostic(
                    kind: .invalid, message: "response from \(url) is larger than \(limit) bytes",
                    hint: "a manifest, config or token is never that large: the registry or a proxy answered with something else")
                return false
            }
            body.append(contentsOf: bytes)
        case .blob(let writer):
            // Error statuses carry an error document, not the blob.
            if status >= 300 {
                if body.count < 65536 { body.append(contentsOf: bytes.prefix(65536 - body.count)) }
                return true
            }
            if !started {
                started = true
                blobBytes = rangeStart > 0 && status == 200 ? 0 : rangeStart
                // A server that ignores the Range request sends the whole blob again.
                if rangeStart > 0 && status == 200 {
                    do {
                        try writer.restart()
                    } catch {
                        sinkError = error
                        return false
                    }
                }
            }
            // Hashing and writing happen on this blob's own queue, so that several blobs use
            // several cores while the event loop keeps receiving. curl hands over 16 KiB at a time;
            // the bytes are gathered into larger chunks first, so that the queue, the hash and
            // write(2) each see a few hundred calls per blob instead of tens of thousands.
            blobBytes += Int64(bytes.count)
            if let expectedSize = writer.expectedSize, blobBytes > expectedSize {
                sinkError = BlobWriter.sizeError(writer.digest, declared: expectedSize, more: true, count: blobBytes)
                return false
            }
            var rest = bytes
            while let source = rest.baseAddress, !rest.isEmpty {
                let buffer = staging ?? takeChunk()
                let n = min(rest.count, buffer.count - staged)
                UnsafeMutableRawBufferPointer(rebasing: buffer[staged..<(staged + n)]).copyMemory(
                    from: UnsafeRawBufferPointer(start: source, count: n))
                staging = buffer
                staged += n
                rest = UnsafeRawBufferPointer(rebasing: rest[n...])
                if staged == buffer.count { flush(writer) }
            }
        }
        return true
    }

    /// The chunk that bytes are gathered into for the writer, and how much of it is filled.
    var staging: UnsafeMutableRawBufferPointer?
    var staged = 0
    /// Chunks the writer is done with, for reuse: fresh memory for every chunk would cost a page
    /// fault per 4 KiB and the allocator's growing and trimming of the heap.
    var freeChunks: [UnsafeMutableRawBufferPointer] = []
    /// How many bytes are handed to the writer's queue at once.
    static let chunkSize = 1 << 20

    /// A chunk on its way to the writer's queue, which owns it until it puts it back on `freeChunks`.
    struct Chunk: @unchecked Sendable {
        let buffer: UnsafeMutableRawBufferPointer
    }

    func takeChunk() -> UnsafeMutableRawBufferPointer {
        pendingLock.lock()
        let reused = freeChunks.popLast()
        pendingLock.unlock()
        return reused ?? UnsafeMutableRawBufferPointer.allocate(byteCount: HTTPTransfer.chunkSize, alignment: 64)
    }

    /// Hands the gathered bytes to the blob's queue.
    func flush(_ writer: BlobWriter) {
        guard let buffer = staging, staged > 0 else { return }
        let count = staged
        staging = nil
        staged = 0
        pendingLock.lock()
        pending += count
        pendingLock.unlock()
        let chunk = Chunk(buffer: buffer)
        writeQueue.async { [self] in
            if asyncError == nil {
                let result = Result { () throws(Diagnostic) in try writer.write(UnsafeRawBufferPointer(rebasing: chunk.buffer[..<count])) }
                if case .failure(let error) = result { asyncError = error }
            }
            pendingLock.lock()
            pending -= count
            freeChunks.append(chunk.buffer)
            pendingLock.unlock()
        }
    }

    deinit {
        staging?.deallocate()
        for chunk in freeChunks { chunk.deallocate() }
        headerList.map { curl_slist_free_all($0) }
    }

    /// Bytes received but not yet hashed and written.
    var queued: Int {
        pendingLock.lock()
        defer { pendingLock.unlock() }
        return pending
    }

    /// Waits until every received byte is hashed and written; a write error becomes `sinkError`.
    func drain() {
        guard case .blob(let writer) = sink else { return }
        flush(writer)
        writeQueue.sync {}
        if sinkError == nil, let error = asyncError { sinkError = error }
    }

    func receiveHeader(_ raw: String) {
        // (Not by Character: "\r\n" is one Character, equal to neither "\r" nor "\n".)
        let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            // A new response (after a redirect or a 100): start over.
            responseHeaders.removeAll()
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        responseHeaders.append((name, value))
    }
}

/// Parallel HTTP over libcurl's multi interface: one event loop, up to `maxConnections` at once.
public final class HTTPEngine {
    public struct Options: Sendable {
        public var maxConnections = 10
        public var connectTimeout = 30
        /// Abort a transfer that moves less than 1 byte/s for this many seconds.
        public var stallTimeout = 60
        /// A CA bundle for registries with their own certificate authority.
        public var caFile: String?
        /// A directory of CA certificates (OpenSSL's hashed names: SSL_CERT_DIR).
        public var caDirectory: String?
        public var verbose = false
        /// Plain HTTP too; else HTTPS only, also for redirects and token services (a registry's
        /// challenge or redirect must not send credentials or layers in clear text, nor make
        /// libcurl read file:// or speak another protocol).
        public var allowHTTP = false

        public init() {}
    }

    public let options: Options
    let multi: UnsafeMutableRawPointer

    public init(options: Options = Options()) {
        self.options = options
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        multi = curl_multi_init()
        tbx_curl_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, options.maxConnections)
        tbx_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.maxConnections)
    }

    deinit { curl_multi_cleanup(multi) }

    /// What to do after an attempt finished: nothing more, or another attempt after a delay.
    public typealias Completion = (HTTPTransfer) -> (next: HTTPTransfer, delay: Double)?

    /// Runs transfers until every one has finished and `completion` asked for no more attempts.
    /// Not re-entrant: `completion` must not run this engine again (use another engine).
    public func run(_ transfers: [HTTPTransfer], tick: (() -> Void)? = nil, completion: Completion) {
        var active: [UnsafeMutableRawPointer: HTTPTransfer] = [:]
        var waiting: [(transfer: HTTPTransfer, notBefore: Double)] = transfers.map { ($0, 0) }
        var running: Int32 = 0
        while !active.isEmpty || !waiting.isEmpty {
            let now = Self.now()
            var still: [(HTTPTransfer, Double)] = []
            for (transfer, notBefore) in waiting {
                if notBefore <= now, let handle = start(transfer) {
                    active[handle] = transfer
                } else {
                    still.append((transfer, notBefore))
                }
            }
            waiting = still
            curl_multi_perform(multi, &running)
            // Unpause transfers whose writer caught up.
            for (handle, transfer) in active where transfer.paused && transfer.queued < HTTPTransfer.queueLimit / 2 {
                transfer.paused = false
                curl_easy_pause(handle, CURLPAUSE_RECV_CONT | CURLPAUSE_SEND_CONT)
            }
            tick?()
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle,
                    let transfer = active.removeValue(forKey: handle)
                else { continue }
                finish(transfer, result: tbx_curl_msg_result(message))
                if let (next, delay) = completion(transfer) {
                    waiting.append((next, Self.now() + delay))
                }
            }
            if !active.isEmpty || !waiting.isEmpty {
                // Wake for socket activity, or when the next delayed attempt is due.
                let due = waiting.map { ($0.notBefore - Self.now()) * 1000 }.min() ?? 1000
                curl_multi_poll(multi, nil, 0, Int32(max(1, min(1000, due))), nil)
            }
        }
    }

    /// Runs one request and returns it answered.
    @discardableResult
    public func perform(_ transfer: HTTPTransfer) -> HTTPTransfer {
        run([transfer]) { _ in nil }
        return transfer
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func start(_ transfer: HTTPTransfer) -> UnsafeMutableRawPointer? {
        guard let easy = curl_easy_init() else { return nil }
        transfer.handle = easy
        let context = Unmanaged.passRetained(transfer).toOpaque()
        tbx_curl_easy_setopt_string(easy, CURLOPT_URL, transfer.url)
        tbx_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        let protocols = options.allowHTTP ? "http,https" : "https"
        tbx_curl_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, protocols)
        tbx_curl_easy_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, protocols)
        tbx_curl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 1)
        tbx_curl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, 10)
        tbx_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT, options.connectTimeout)
        tbx_curl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, 1)
        tbx_curl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, options.stallTimeout)
        tbx_curl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, 512 * 1024)
        tbx_curl_easy_setopt_string(easy, CURLOPT_USERAGENT, "toolbox-img-pull/1")
        tbx_curl_easy_setopt_string(easy, CURLOPT_ACCEPT_ENCODING, "identity")
        if let ca = options.caFile { tbx_curl_easy_setopt_string(easy, CURLOPT_CAINFO, ca) }
        if let directory = options.caDirectory { tbx_curl_easy_setopt_string(easy, CURLOPT_CAPATH, directory) }
        if options.verbose { tbx_curl_easy_setopt_long(easy, CURLOPT_VERBOSE, 1) }
        if transfer.method == .head { tbx_curl_easy_setopt_long(easy, CURLOPT_NOBODY, 1) }
        if transfer.rangeStart > 0 { tbx_curl_easy_setopt_string(easy, CURLOPT_RANGE, "\(transfer.rangeStart)-") }
        transfer.errorBuffer.withUnsafeMutableBufferPointer { buffer in
            _ = tbx_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, buffer.baseAddress)
        }
        var list: UnsafeMutablePointer<curl_slist>?
        for header in transfer.headers { list = curl_slist_append(list, header) }
        transfer.headerList = list
        if let list { tbx_curl_easy_setopt_pointer(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list)) }
        tbx_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, context)
        tbx_curl_easy_setopt_write_function(easy) { data, size, count, user in
            guard let user else { return 0 }
            let transfer = Unmanaged<HTTPTransfer>.fromOpaque(user).takeUnretainedValue()
            if case .blob = transfer.sink, transfer.status < 300, transfer.queued > HTTPTransfer.queueLimit {
                transfer.paused = true
                return Int(CURL_WRITEFUNC_PAUSE)
            }
            let bytes = UnsafeRawBufferPointer(start: data, count: size * count)
            return transfer.receive(bytes) ? size * count : 0
        }
        tbx_curl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, context)
        tbx_curl_easy_setopt_header_function(easy) { data, size, count, user in
            guard let user, let data else { return 0 }
            let transfer = Unmanaged<HTTPTransfer>.fromOpaque(user).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: size * count), as: UTF8.self)
            transfer.receiveHeader(line)
            return size * count
        }
        curl_multi_add_handle(multi, easy)
        return easy
    }

    func finish(_ transfer: HTTPTransfer, result: CURLcode) {
        guard let easy = transfer.handle else { return }
        transfer.drain()
        transfer.curlCode = result
        transfer.curlMessage = transfer.errorBuffer.withUnsafeBufferPointer { buffer in
            buffer.baseAddress.map { String(cString: $0) } ?? ""
        }
        var code = 0
        tbx_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
        if code != 0 { transfer.status = code }
        var url: UnsafeMutablePointer<CChar>?
        tbx_curl_easy_getinfo_string(easy, CURLINFO_EFFECTIVE_URL, &url)
        transfer.effectiveURL = url.map { String(cString: $0) } ?? transfer.url
        var followed = 0
        tbx_curl_easy_getinfo_long(easy, CURLINFO_REDIRECT_COUNT, &followed)
        transfer.redirects = followed
        curl_multi_remove_handle(multi, easy)
        curl_easy_cleanup(easy)
        curl_slist_free_all(transfer.headerList)
        transfer.headerList = nil
        transfer.handle = nil
        Unmanaged.passUnretained(transfer).release()
    }
}
