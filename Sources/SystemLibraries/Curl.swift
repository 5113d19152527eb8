import CCurl
import CToolboxShim

/// libcurl: version and a blocking fetch of a URL into memory (file:// and http(s)://). The
/// registry client of img-pull builds on the multi interface of the same library.
public enum Curl {
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    public static var version: String { String(cString: curl_version()) }

    final class Sink {
        var bytes: [UInt8] = []
    }

    /// Fetches a URL; returns the response code (0 for file://) and the body.
    public static func fetch(_ url: String) throws(Failure) -> (status: Int, body: [UInt8]) {
        guard let handle = curl_easy_init() else { throw Failure(description: "curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        let sink = Sink()
        let context = Unmanaged.passRetained(sink)
        defer { context.release() }
        tbx_curl_easy_setopt_string(handle, CURLOPT_URL, url)
        tbx_curl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        tbx_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context.toOpaque())
        tbx_curl_easy_setopt_write_function(handle) { data, size, count, user in
            guard let data, let user else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(user).takeUnretainedValue()
            sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: data, count: size * count))
            return size * count
        }
        let result = curl_easy_perform(handle)
        guard result == CURLE_OK else { throw Failure(description: String(cString: curl_easy_strerror(result))) }
        var status = 0
        tbx_curl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return (status, sink.bytes)
    }
}
