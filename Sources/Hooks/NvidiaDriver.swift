#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ToolboxCore

/// The host's NVIDIA driver version and the CUDA version it supports, for the NVIDIA hook's
/// NVIDIA_REQUIRE_* checks: what libnvidia-container asks libcuda, asked the same way.
public enum NvidiaDriver {
    public struct Versions: Sendable, Equatable {
        /// From the real file name of libcuda.so.1 (`libcuda.so.535.104.05`).
        public var driver: String
        /// From cuDriverGetVersion (12020 is `12.2`).
        public var cuda: String
    }

    /// Finds libcuda.so.1 in the host's linker cache `ldcache`, loads it and asks it.
    public static func versions(ldcache: String) throws(Diagnostic) -> Versions {
        guard let entries = LinkerCache.nativeEntries(of: ldcache) else {
            throw Diagnostic(kind: .unreadable, file: ldcache, message: "cannot read the host's linker cache")
        }
        guard let entry = entries.first(where: { $0.name == "libcuda.so.1" }) else {
            throw Diagnostic(kind: .notFound, file: ldcache, message: "libcuda.so.1 is not in the host's linker cache", hint: "install the NVIDIA driver's CUDA library, or run ldconfig")
        }
        var resolved = entry.path
        if let real = realpath(entry.path, nil) {
            resolved = String(cString: real)
            free(real)
        }
        let fileName = resolved.split(separator: "/").last.map(String.init) ?? resolved
        let driver = fileName.hasPrefix("libcuda.so.") ? String(fileName.dropFirst("libcuda.so.".count)) : "unknown"
        guard let handle = dlopen(resolved, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw Diagnostic(kind: .system, file: resolved, message: "cannot load the driver's CUDA library: \(reason)")
        }
        defer { dlclose(handle) }
        guard let symbol = dlsym(handle, "cuDriverGetVersion") else {
            throw Diagnostic(kind: .invalid, file: resolved, message: "the library has no cuDriverGetVersion")
        }
        typealias GetVersion = @convention(c) (UnsafeMutablePointer<Int32>?) -> Int32
        let getVersion = unsafeBitCast(symbol, to: GetVersion.self)
        var version: Int32 = 0
        let status = getVersion(&version)
        guard status == 0, version > 0 else {
            throw Diagnostic(kind: .system, file: resolved, message: "cuDriverGetVersion failed (CUDA error \(status))")
        }
        return Versions(driver: driver, cuda: "\(version / 1000).\((version % 1000) / 10)")
    }
}
