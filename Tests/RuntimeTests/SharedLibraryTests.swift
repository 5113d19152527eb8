import Foundation
import Hooks
import Testing

@Suite struct SharedLibraryTests {
    /// Sarus' MPI hook's own table of pairs (host file, image file) for its three checks.
    @Test func abiChecksAsSarus() {
        let compatible = ABICompatibility.Verdict.compatible
        let cases: [(String, String, ABICompatibility, Bool)] = [
            ("libmpi.so.12.5.5", "libmpi.so.12.5.5", .major, true),
            ("libmpi.so.12.5.5", "libmpi.so.12.6", .major, true),
            ("libmpi.so.12.5.5", "libmpi.so.11.5.5", .major, false),
            ("libmpi.so.12.5.5", "libmpi.so.13.5.5", .major, false),
            ("libmpi.so.12.5.5", "libmpi.so", .major, false),
            ("libmpi.so", "libmpi.so.12.5.5", .major, false),
            ("libmpi.so.12.1", "libmpi.so.12", .major, true),
            ("libmpi.so.12.5.5", "libmpi.so.12.5.0", .full, true),
            ("libmpi.so.12.5.5", "libmpi.so.12.4.0", .full, true),
            ("libmpi.so.12.5.5", "libmpi.so.12.6", .full, true),  // accepted with a warning
            ("libmpi.so.12.5.5", "libmpi.so.11.5.5", .full, false),
            ("libmpi.so.12", "libmpi.so.12.1", .full, true),  // accepted with a warning
            ("libmpi.so.12.5.5", "libmpi.so.12.5.10", .strict, true),
            ("libmpi.so.12.5.5", "libmpi.so.12.4.0", .strict, false),
            ("libmpi.so.12.5.5", "libmpi.so.12.6", .strict, false),
            ("libmpi.so.12.1", "libmpi.so.12", .strict, false),
            ("libmpi.so.12", "libmpi.so.12.0", .strict, false),
            ("libmpi.so.12.5.5", "libmpi.so.13.5.5", .strict, false),
            ("libmpi.so.12", "libmpi.so.12", .strict, true),
        ]
        for (host, image, type, accepted) in cases {
            let verdict = type.check(host: host, image: image)
            if case .incompatible = verdict {
                #expect(!accepted, "\(type) \(host) for \(image): \(verdict)")
            } else {
                #expect(accepted, "\(type) \(host) for \(image): \(verdict)")
            }
        }
        #expect(ABICompatibility.full.check(host: "libmpi.so.12.5.5", image: "libmpi.so.12.6") != compatible)
        #expect(
            ABICompatibility.major.check(host: "libmpi.so.13.0.0", image: "libmpi.so.12.1.0")
                == .incompatible("the major versions differ (13 on the host, 12 in the image)"))
    }

    @Test func namesAndVersions() {
        #expect(SharedLibrary.versions("libmpi.so.12.1.8") == [12, 1, 8])
        #expect(SharedLibrary.versions("libmpi.so") == [])
        #expect(SharedLibrary.versions("libfoo.so.1.beta") == [])
        #expect(SharedLibrary.stem("libmpi.so.12.1.8") == "libmpi")
        #expect(SharedLibrary.stem("libnccl-net.so") == "libnccl-net")
        #expect(SharedLibrary.stem("libsomething.sound") == nil)
    }

    /// The machine's own libc and linker cache: what ldconfig and the loader read.
    @Test func elfAndLinkerCacheOfThisMachine() throws {
        let libc = try #require(["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .first { FileManager.default.fileExists(atPath: $0) })
        #expect(SharedLibrary.soname(of: libc) == "libc.so.6")
        let dynamic = try #require(SharedLibrary.dynamic(of: "/bin/ls"))
        #expect(dynamic.soname == nil && dynamic.needed.contains("libc.so.6"), "\(dynamic)")
        #expect(SharedLibrary.dynamic(of: "/etc/passwd") == nil)
        #expect(SharedLibrary.dynamic(of: "/nonexistent") == nil)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "/etc/ld.so.cache")))
        let entries = LinkerCache.native(try #require(LinkerCache.parse(bytes)))
        #expect(entries.contains { $0.name == "libc.so.6" && $0.path.hasSuffix("/libc.so.6") }, "\(entries.prefix(5))")
        // Damaged caches are refused, never read past their end.
        #expect(LinkerCache.parse(Array(bytes.prefix(40))) == nil)
        #expect(LinkerCache.parse(Array("glibc-ld.so.cache1.1".utf8) + [UInt8](repeating: 0xff, count: 60)) == nil)
        #expect(LinkerCache.parse([]) == nil)
    }
}
