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
        var driver = fileName.hasPrefix("libcuda.so.") ? String(fileName.dropFirst("libcuda.so.".count)) : ""
        if !Self.isVersion(driver) {
            // libcuda.so.1 is the file itself, not a link to libcuda.so.VERSION: the kernel
            // module says the version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05 ...").
            driver = Self.moduleVersion() ?? "unknown"
        }
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
            throw Diagnostic(
                kind: .system, file: resolved,
                message: status == 0 ? "cuDriverGetVersion gave the version \(version)" : "cuDriverGetVersion failed (CUDA error \(status))")
        }
        return Versions(driver: driver, cuda: "\(version / 1000).\((version % 1000) / 10)")
    }

    /// The kernel module's version, from /proc/driver/nvidia/version.
    static func moduleVersion() -> String? {
        guard let text = try? FileReader.readText("/proc/driver/nvidia/version") else { return nil }
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
        guard let module = words.firstIndex(of: "Module"), module + 1 < words.count, isVersion(words[module + 1]) else { return nil }
        return words[module + 1]
    }

    /// A driver version: numbers separated by dots, at least two (535.104.05).
    static func isVersion(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }
}
