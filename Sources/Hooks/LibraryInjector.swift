import Glibc
import Runtime
import ToolboxCore

/// Brings host shared libraries into a container's root file system, as the library hooks (GPU,
/// CXI, NCCL, MPI, Slurm, DCGM) need it:
///
/// - a library the image already has (same soname, in its linker cache or its library
///   directories) is replaced: the host file is bind-mounted over the image's file, so that
///   programs built with an RPATH find the host's too;
/// - one it lacks is bind-mounted into `/opt/toolbox/<name>/lib`, with its soname link, and that
///   directory is put first in the image's linker configuration;
/// - then the image's linker cache is refreshed with `ldconfig -X -r` (glibc's, from the host).
///   An image without glibc's linker configuration (musl: Alpine) gets an `LD_LIBRARY_PATH`
///   entry in the container's environment instead, and a note.
///
/// Every path inside the container is resolved inside it (RootFilesystem): an image's symbolic
/// links cannot lead a mount or a write onto the host.
public struct LibraryInjector {
    public enum Placement: Sendable {
        /// Replace the image's copy, or add the library when the image has none.
        case replaceOrAdd
        /// Add only the libraries the image lacks (dependencies that must not replace the image's).
        case ifMissing
    }

    public var rootfs: RootFilesystem
    /// The hook's name: `/opt/toolbox/<name>/lib`, `/etc/ld.so.conf.d/000-toolbox-<name>.conf`.
    public var name: String
    public var placement: Placement = .replaceOrAdd
    /// Check each library against the image's library of the same name first (MPI).
    public var abi: ABICompatibility?
    /// The host's linker cache, for libraries named without a path.
    public var hostCache = "/etc/ld.so.cache"
    /// Names missing from the host's cache are skipped rather than an error.
    public var optional = false
    /// Also add (when the image lacks them) the libraries the given ones load, recursively.
    public var dependencies = false
    /// Host programs whose libraries are added (when the image lacks them), recursively.
    public var neededBy: [String] = []
    /// The host's ldconfig (glibc's), run with `-r ROOT`.
    public var ldconfig: String?
    /// Under hook-run (HOOK_RUN_DEFERRED): the refresh of the image's linker cache is asked of
    /// hook-run, which runs ldconfig once after the last hook, instead of once per hook.
    public var deferredFile: String?
    /// The container's environment file (ENROOT_ENVIRON), for the LD_LIBRARY_PATH fallback.
    public var environFile: String?
    /// hook-run without --apply: add fstab lines to this file (ENROOT_MOUNTS) instead of mounting.
    public var recordFile: String?
    /// The 32-bit versions of the libraries (i386 on x86_64: NVIDIA's compat32 capability):
    /// taken from the host cache's 32-bit entries, matched against the image's 32-bit libraries
    /// (its linker cache's 32-bit entries, /usr/lib32, /usr/lib/i386-linux-gnu), added into
    /// `/opt/toolbox/<name>/lib32`.
    public var compat32 = false
    /// Messages for people (notes, warnings, and with --verbose each action).
    public var say: (String) -> Void = { _ in }
    public var verbose = false

    public init(rootfs: RootFilesystem, name: String) {
        self.rootfs = rootfs
        self.name = name
    }

    public var directory: String { "/opt/toolbox/\(name)/" + libraryDirectoryName }
    /// The name of the hooks' library directories under /opt/toolbox/<hook>/ for this ABI.
    var libraryDirectoryName: String { compat32 ? "lib32" : "lib" }

    /// What was done.
    public struct Outcome: Sendable, Equatable {
        /// (host file, image path it now covers)
        public var replaced: [[String]] = []
        /// (host file, path in the container)
        public var added: [[String]] = []
        /// Library names or files left aside, with why.
        public var skipped: [String] = []
        public var cacheRefreshed = false
        /// The refresh was left to hook-run (one ldconfig after the last hook).
        public var cacheRefreshDeferred = false
        public var libraryPath: String?
    }

    /// The libraries glibc itself provides: never injected (the image's must match its loader).
    static let glibcCore: Set<String> = [
        "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libresolv.so.2", "libutil.so.1",
        "libanl.so.1", "libmvec.so.1", "libBrokenLocale.so.1", "libnss_files.so.2", "libnss_dns.so.2",
        "libc_malloc_debug.so.0", "libthread_db.so.1",
    ]

    /// The directories searched for the image's copies besides its linker cache.
    static let imageDirectories = [
        "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
    ]
    /// Where images keep their 32-bit libraries (Debian's multiarch and the lib32 of others).
    static let imageDirectories32 = ["/lib32", "/usr/lib32", "/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu"]

    struct HostLibrary {
        var file: String
        var soname: String
        /// Other names it was asked for by (a link's name: `libnccl-net.so`), linked too.
        var aliases: [String] = []
        /// The name it was looked up by in the host's linker cache (`libcuda.so` for
        /// `libcuda.so.1`): a link of that name is made beside an image's copy it replaces, as
        /// the hook's directory has one beside an added copy.
        var lookedUpAs: String?
        var fileName: String { String(file.split(separator: "/").last ?? "") }
    }

    public func inject(_ requests: [String]) throws(Diagnostic) -> Outcome {
        var outcome = Outcome()
        var libraries = try resolve(requests, outcome: &outcome).map { ($0, placement) }
        if dependencies || !neededBy.isEmpty {
            let roots = (dependencies ? libraries.map(\.0.file) : []) + neededBy
            let known = Set(libraries.map(\.0.soname))
            for library in try self.dependencies(of: roots, outcome: &outcome) where !known.contains(library.soname) {
                libraries.append((library, .ifMissing))
            }
        }
        let image = imageLibraries()
        var mounts: [(String, String, Bool)] = []  // (host file, container path, create)
        var links: [(String, String)] = []  // (link in the hook's directory, its target name)
        var besideReplaced: [(String, String)] = []  // (a link beside a replaced library, its target name)
        // With an ABI check (Sarus' MPI hook): the image must have at least one of the libraries
        // asked for; one it lacks (libmpicxx beside a C-only MPICH) is added.
        var counterparts: [String: [(String, String)]] = [:]
        if abi != nil {
            let asked = libraries.filter { $0.1 == .replaceOrAdd }.map(\.0)
            for library in asked { counterparts[library.file] = self.counterparts(of: library, in: image) }
            if let first = asked.first, asked.allSatisfy({ counterparts[$0.file]?.isEmpty != false }) {
                let stems = asked.compactMap { Self.stem(of: $0) }.map { $0 + ".so.*" }
                let message =
                    asked.count == 1
                    ? "the image has no \(stems.joined()) for the host's \(first.file) to replace"
                    : "the image has none of \(stems.joined(separator: ", ")) for the host's libraries to replace"
                throw Diagnostic(
                    kind: .notFound, message: message,
                    hint: "the image must bring its own build of the library (for MPI: an MPICH-ABI MPI such as MPICH) so that the host's can replace it")
            }
        }
        for (library, placement) in libraries {
            var existing = image[library.soname] ?? []
            if let abi, placement == .replaceOrAdd {
                for (path, realName) in counterparts[library.file] ?? [] {
                    switch abi.check(host: library.fileName, image: realName) {
                    case .compatible: break
                    case .warning(let text): say("warning: \(text)")
                    case .incompatible(let text):
                        throw Diagnostic(
                            kind: .invalid,
                            message: "the host's \(library.file) cannot replace the image's \(path) (\(realName)): \(text) (\(abi.rawValue) ABI check)",
                            hint: "use an image built with an ABI-compatible version, or disable the hook's annotation")
                    }
                    if !existing.contains(path) { existing.append(path) }
                }
            }
            if !existing.isEmpty {
                if placement == .ifMissing {
                    outcome.skipped.append("\(library.soname): the image has \(existing[0])")
                    continue
                }
                // One mount per file: /lib/x/libfoo.so.1 and /usr/lib/x/libfoo.so.1 are often the same.
                var covered: Set<String> = []
                for path in existing {
                    let resolved = rootfs.resolve(path)
                    guard covered.insert(resolved ?? path).inserted else { continue }
                    if let resolved, let kept = newerCompatibilityCopy(path, resolved: resolved, than: library) {
                        say("note: kept the image's \(path) (\(kept)): a forward-compatibility build newer than the host's \(library.fileName)")
                        continue
                    }
                    mounts.append((library.file, path, false))
                    outcome.replaced.append([library.file, path])
                    // The name it was asked for (libcuda.so: -lcuda, dlopen) beside the replaced
                    // copy too, as beside an added one, where the image has no file of that name.
                    let slash = path.lastIndex(of: "/") ?? path.startIndex
                    let parent = String(path[..<slash])
                    let name = String(path[path.index(after: slash)...])
                    let wanted = Set(library.aliases + [library.lookedUpAs].compactMap { $0 }).filter { $0 != library.soname && $0 != name }
                    // The image's directory is listed only when there is a link to make (a
                    // library directory holds thousands of names).
                    if !wanted.isEmpty {
                        let names = Set(rootfs.list(parent.isEmpty ? "/" : parent))
                        for alias in wanted.sorted() where !names.contains(alias) { besideReplaced.append((parent + "/" + alias, name)) }
                    }
                }
            } else {
                let target = directory + "/" + library.fileName
                mounts.append((library.file, target, true))
                outcome.added.append([library.file, target])
                for name in [library.soname] + library.aliases where name != library.fileName {
                    links.append((directory + "/" + name, library.fileName))
                }
            }
        }
        if let recordFile {
            let lines = mounts.map { "\(Self.escape($0.0)) \(Self.escape($0.1)) none \($0.2 ? "x-create=file," : "")bind,ro,nosuid,nodev\n" }
            try FileWriter.append(lines.joined(), to: recordFile)
            return outcome
        }
        var options = MountOptions()
        options.readOnly = true
        options.nosuid = true
        options.nodev = true
        options.recursive = false
        for (source, target, create) in mounts {
            do {
                try rootfs.bind(source, to: target, options: options, create: create)
            } catch {
                throw Diagnostic(kind: .system, message: "cannot mount \(source) at \(target) in the container: \(error.reason)")
            }
            if verbose { say("\(create ? "added" : "replaced") \(target) (\(source))") }
        }
        for (link, target) in links {
            do {
                try rootfs.symlink(target, at: link)
            } catch {
                throw Diagnostic(kind: .system, message: "cannot create the link \(link) in the container: \(error.reason)")
            }
        }
        for (link, target) in besideReplaced {
            do {
                try rootfs.symlink(target, at: link)
                if verbose { say("linked \(link) to \(target)") }
            } catch {
                say("note: no \(link) beside the replaced library: \(error.reason)")
            }
        }
        if mounts.isEmpty { return outcome }
        try refresh(added: !outcome.added.isEmpty, outcome: &outcome)
        return outcome
    }

    /// The host files for the requests: paths (links followed), or names looked up in the host's
    /// linker cache (`libcuda.so` finds `libcuda.so.1`).
    func resolve(_ requests: [String], outcome: inout Outcome) throws(Diagnostic) -> [HostLibrary] {
        var cache: [LinkerCache.Entry]?
        var result: [HostLibrary] = []
        var seen: Set<String> = []
        for request in requests {
            var files: [String] = []
            var alias: String?
            if request.contains("/") {
                alias = String(request.split(separator: "/").last ?? "")
                guard let real = Self.realPath(request) else {
                    throw Diagnostic(
                        kind: .notFound, message: "the library \(request) does not exist on this host",
                        hint: "check the hook's configuration")
                }
                if let wide = SharedLibrary.is64Bit(real), wide == compat32 {
                    throw Diagnostic(
                        kind: .invalid, message: "the library \(request) is a \(wide ? 64 : 32)-bit file, not a \(wide ? 32 : 64)-bit one",
                        hint: compat32 ? "give the 32-bit build of the library with --compat32" : "32-bit libraries go in with --compat32")
                }
                files = [real]
            } else {
                if cache == nil { cache = try hostEntries() }
                var names: Set<String> = []
                for entry in cache ?? [] where entry.name == request || entry.name.hasPrefix(request + ".") {
                    if names.insert(entry.name).inserted, let real = Self.realPath(entry.path) { files.append(real) }
                }
                if files.isEmpty {
                    if optional {
                        outcome.skipped.append("\(request): not in \(hostCache)")
                        continue
                    }
                    throw Diagnostic(
                        kind: .notFound, message: "\(request) is not in the host's linker cache (\(hostCache))",
                        hint: "install it on the host and run ldconfig, or name the file by its path in the hook's configuration")
                }
            }
            for file in files {
                if !seen.insert(file).inserted {
                    if let alias, let index = result.firstIndex(where: { $0.file == file }),
                        alias != result[index].soname, alias != result[index].fileName, !result[index].aliases.contains(alias)
                    {
                        result[index].aliases.append(alias)
                    }
                    continue
                }
                var info = stat()
                guard stat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                    throw Diagnostic(kind: .invalid, message: "the library \(file) is not a regular file")
                }
                guard let dynamic = SharedLibrary.dynamic(of: file) else {
                    throw Diagnostic(
                        kind: .invalid, message: "the library \(file) is not an ELF shared library",
                        hint: "inject takes shared libraries; bind-mount other files with a line in $ENROOT_MOUNTS")
                }
                let soname = dynamic.soname ?? String(file.split(separator: "/").last ?? "")
                if Self.glibcCore.contains(soname) || soname.hasPrefix("ld-linux") {
                    outcome.skipped.append("\(soname): part of glibc, left to the image")
                    continue
                }
                var library = HostLibrary(file: file, soname: soname)
                if let alias, alias != soname, alias != library.fileName { library.aliases = [alias] }
                if !request.contains("/"), request != soname { library.lookedUpAs = request }
                result.append(library)
            }
        }
        return result
    }

    /// The libraries that the given host files load, recursively (glibc's left aside), found as
    /// the loader would: the file's RUNPATH (or RPATH), then the host's linker cache.
    func dependencies(of files: [String], outcome: inout Outcome) throws(Diagnostic) -> [HostLibrary] {
        let cache = try hostEntries()
        var byName: [String: String] = [:]
        for entry in cache where byName[entry.name] == nil { byName[entry.name] = entry.path }
        var result: [HostLibrary] = []
        var seen: Set<String> = []
        var queue = files
        var visited: Set<String> = []
        while let file = queue.popLast() {
            guard visited.insert(file).inserted, let dynamic = SharedLibrary.dynamic(of: file) else { continue }
            let origin = String(file[..<(file.lastIndex(of: "/") ?? file.startIndex)])
            for name in dynamic.needed where !Self.glibcCore.contains(name) && !name.hasPrefix("ld-linux") && seen.insert(name).inserted {
                let candidates = dynamic.runpath.map { $0.replacing("$ORIGIN", with: origin).replacing("${ORIGIN}", with: origin) + "/" + name }
                guard let path = (candidates + (byName[name].map { [$0] } ?? [])).first(where: { access($0, R_OK) == 0 }),
                    let real = Self.realPath(path)
                else {
                    outcome.skipped.append("\(name) (needed by \(file)): not found on the host")
                    continue
                }
                result.append(HostLibrary(file: real, soname: SharedLibrary.soname(of: real) ?? name))
                queue.append(real)
            }
        }
        return result
    }

    func hostEntries() throws(Diagnostic) -> [LinkerCache.Entry] {
        if compat32 && LinkerCache.compat32Flags == 0 {
            throw Diagnostic(
                kind: .unavailable, message: "this machine has no 32-bit libraries to inject (compat32 is for x86_64 hosts)",
                hint: "leave compat32 out of NVIDIA_DRIVER_CAPABILITIES")
        }
        guard let entries = LinkerCache.nativeEntries(of: hostCache, compat32: compat32) else {
            throw Diagnostic(
                kind: .unreadable, file: hostCache, message: "cannot read the host's linker cache",
                hint: "run ldconfig on the host, or name the libraries by their paths")
        }
        return entries
    }

    /// The image's libraries by name: its linker cache (native entries), then its library
    /// directories (files named like the soname, for images without a cache).
    func imageLibraries() -> [String: [String]] {
        var result: [String: [String]] = [:]
        if let bytes = rootfs.read("/etc/ld.so.cache", limit: 64 << 20), let entries = LinkerCache.parse(bytes) {
            for entry in compat32 ? LinkerCache.compat32(entries) : LinkerCache.native(entries)
            where result[entry.name]?.contains(entry.path) != true {
                result[entry.name, default: []].append(entry.path)
            }
        }
        // Also what earlier hooks added (their linker cache refresh may still be pending), and
        // the directories of the container's LD_LIBRARY_PATH (HPC images often put their MPI or
        // libfabric there): a copy found there is replaced too, or the program would load it.
        let injected = rootfs.list("/opt/toolbox").sorted().map { "/opt/toolbox/\($0)/" + libraryDirectoryName }
        // LD_LIBRARY_PATH mixes ABIs (the loader skips what does not fit): only for 64 bits.
        let searched = compat32 ? [] : containerVariable("LD_LIBRARY_PATH").split(separator: ":").map(String.init).filter {
            $0.hasPrefix("/") && !$0.hasPrefix("/opt/toolbox/")
        }
        let configured = compat32 ? [] : configuredDirectories().filter { !$0.hasPrefix("/opt/toolbox/") }
        for directory in searched + (compat32 ? Self.imageDirectories32 : Self.imageDirectories) + configured + injected {
            for name in rootfs.list(directory) where name.contains(".so") {
                let path = directory + "/" + name
                if result[name]?.contains(path) != true { result[name, default: []].append(path) }
            }
        }
        return result
    }

    /// The directories the image's linker configuration names (/etc/ld.so.conf and the
    /// /etc/ld.so.conf.d/*.conf files, not the hooks' own): a library there is found also when
    /// the image's linker cache was not rebuilt after it came (a CUDA compat directory added by
    /// a later layer). 64-bit only: 32-bit directories (i386, lib32) are left to --compat32.
    func configuredDirectories() -> [String] {
        let included = rootfs.list("/etc/ld.so.conf.d").filter { $0.hasSuffix(".conf") && !$0.hasPrefix("000-toolbox-") }.sorted()
        var result: [String] = []
        for file in ["/etc/ld.so.conf"] + included.map({ "/etc/ld.so.conf.d/" + $0 }) {
            guard let bytes = rootfs.read(file, limit: 1 << 20) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let text = line.prefix { $0 != "#" }
                // Directories separated by blanks, commas or colons; include and hwcap lines start otherwise.
                for entry in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," || $0 == ":" }) where entry.hasPrefix("/") {
                    let directory = String(entry)
                    if Self.imageDirectories32.contains(directory) || directory.contains("i386") || directory.contains("i686")
                        || directory.hasSuffix("lib32") || result.contains(directory)
                    {
                        continue
                    }
                    result.append(directory)
                }
            }
        }
        return result
    }

    /// The real file's name of an image library (`path`, its links leading to `resolved`) in a
    /// directory named compat (CUDA's forward-compatibility libcuda, /usr/local/cuda/compat)
    /// whose version is above the host library's: the image brings a newer driver library on
    /// purpose, and it must stay.
    func newerCompatibilityCopy(_ path: String, resolved: String, than library: HostLibrary) -> String? {
        guard path.split(separator: "/").dropLast().contains("compat") else { return nil }
        let name = String(resolved.split(separator: "/").last ?? "")
        let image = SharedLibrary.versions(name)
        let host = SharedLibrary.versions(library.fileName)
        guard image.count > 1, host.count > 1 else { return nil }
        return image.lexicographicallyPrecedes(host) || image == host ? nil : name
    }

    /// The name a library is matched by in the image: its file name's stem (as Sarus matches,
    /// also where the soname differs: Cray's libmpi.so.12.5.5 with soname libmpich_gnu_71.so.3),
    /// else its soname's.
    static func stem(of library: HostLibrary) -> String? {
        SharedLibrary.stem(library.fileName) ?? SharedLibrary.stem(library.soname)
    }

    /// The image's libraries with the same stem as `library` (`libmpi.so.*` for the host's
    /// `libmpi.so.12`), each as its path and the name of the file its links lead to.
    func counterparts(of library: HostLibrary, in image: [String: [String]]) -> [(String, String)] {
        guard let stem = Self.stem(of: library) else { return [] }
        var result: [(String, String)] = []
        var real: Set<String> = []
        for (name, paths) in image.sorted(by: { $0.key < $1.key }) where SharedLibrary.stem(name) == stem && name != stem + ".so" {
            for path in paths {
                guard let resolved = rootfs.resolve(path), real.insert(resolved).inserted else { continue }
                result.append((path, String(resolved.split(separator: "/").last ?? "")))
            }
        }
        return result
    }

    /// A variable of the container as the hooks have it so far (ENROOT_ENVIRON), "" when unset.
    func containerVariable(_ name: String) -> String {
        environFile.flatMap { try? FileReader.readText($0) }.map(EnvironFile.parse)?.last(where: { $0.0 == name })?.1 ?? ""
    }

    /// Makes the added libraries findable: the linker configuration and cache of a glibc image,
    /// else LD_LIBRARY_PATH.
    func refresh(added: Bool, outcome: inout Outcome) throws(Diagnostic) {
        let glibc = rootfs.exists("/etc/ld.so.conf") || rootfs.exists("/etc/ld.so.cache")
        guard glibc else {
            guard added else { return }
            let previous = containerVariable("LD_LIBRARY_PATH")
            // Once per directory (a hook may inject in several calls).
            if previous.split(separator: ":").contains(where: { $0 == directory }) {
                outcome.libraryPath = previous
                return
            }
            let value = previous.isEmpty ? directory : directory + ":" + previous
            if let environFile { try FileWriter.append("LD_LIBRARY_PATH=\(value)\n", to: environFile) }
            outcome.libraryPath = value
            say(
                "note: the image has no glibc linker configuration (/etc/ld.so.conf; a musl image such as Alpine?): "
                    + "the \(name) libraries are found through LD_LIBRARY_PATH=\(directory) instead")
            return
        }
        if added {
            do {
                // One file per hook, with its lib and lib32 directories as they are added.
                let file = "/etc/ld.so.conf.d/000-toolbox-\(name).conf"
                let lines = (rootfs.read(file).map { String(decoding: $0, as: UTF8.self) } ?? "").split(separator: "\n").map(String.init)
                if !lines.contains(directory) { try rootfs.write(file, (lines + [directory]).joined(separator: "\n") + "\n") }
                let configuration = rootfs.read("/etc/ld.so.conf").map { String(decoding: $0, as: UTF8.self) } ?? ""
                if !configuration.contains("ld.so.conf.d") {
                    try rootfs.write("/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n" + configuration)
                }
            } catch {
                throw Diagnostic(kind: .system, message: "cannot write the image's linker configuration: \(error)")
            }
        }
        guard let program = ldconfig ?? Self.hostLdconfig(), access(program, X_OK) == 0 else {
            throw Diagnostic(
                kind: .unavailable,
                message: "no ldconfig on this host to refresh the image's linker cache" + (ldconfig.map { " (\($0) is not an executable file)" } ?? ""),
                hint: "install glibc's ldconfig (libc-bin), or set TOOLBOX_LDCONFIG to its path")
        }
        if let deferredFile {
            try FileWriter.append("ldconfig \(program)\n", to: deferredFile)
            outcome.cacheRefreshDeferred = true
            if verbose { say("the image's linker cache is refreshed after the last hook (\(program) -X -r)") }
            return
        }
        try Self.refreshCache(program: program, root: rootfs.path)
        outcome.cacheRefreshed = true
        if verbose { say("refreshed the image's linker cache (\(program) -X -r)") }
    }

    /// Runs the host's ldconfig on the image: `-X`, no links made or changed, so that a host
    /// directory mounted into the image's library path is never written to (the hooks'
    /// directories have their links already).
    /// `timeout`: an image can make ldconfig wait for ever (a fifo among its ld.so.conf files).
    static func refreshCache(program: String, root: String, timeout: Double = 60) throws(Diagnostic) {
        let result = ChildProcess.run(
            [program, "-X", "-r", root], environment: ProcessEnvironment.current, captureErrors: true, timeout: timeout)
        let status = result.status
        guard status == 0 else {
            let messages = String(decoding: result.errors, as: UTF8.self)[...].trimmingCharacters(in: " \t\n")
            let outcome = result.failure ?? "exited with status \(status)"
            throw Diagnostic(
                kind: .system,
                message: "cannot refresh the image's linker cache (\(program) -X -r \(root) \(outcome))"
                    + (messages.isEmpty ? "" : ": " + messages),
                hint: result.failure != nil && status == -1 && result.failure?.hasPrefix("did not finish") == true
                    ? "something in the image's linker configuration (/etc/ld.so.conf, /etc/ld.so.conf.d) blocks reading: a fifo or a device"
                    : "set the hook's annotation to false to start without it")
        }
    }

    /// Does what the hooks left to hook-run in `file` (HOOK_RUN_DEFERRED): one ldconfig for all
    /// the library hooks. Called after the last hook, and before a hook starts a service (which
    /// may need the libraries); the file is emptied. Returns whether the cache was refreshed.
    @discardableResult
    public static func runDeferred(_ file: String, root: String, timeout: Double = 60) throws(Diagnostic) -> Bool {
        guard let text = try? FileReader.readText(file), !text.isEmpty else { return false }
        let program = text.split(separator: "\n").last { $0.hasPrefix("ldconfig ") }.map { String($0.dropFirst("ldconfig ".count)) }
        try FileWriter.writeFile(file, []) { code in
            Diagnostic(kind: .output, file: file, message: "cannot write: \(String(cString: strerror(code)))")
        }
        guard let program else { return false }
        try refreshCache(program: program, root: root, timeout: timeout)
        return true
    }

    /// glibc's real ldconfig (Ubuntu wraps it in a script named ldconfig).
    static func hostLdconfig() -> String? {
        ["/sbin/ldconfig.real", "/usr/sbin/ldconfig.real", "/sbin/ldconfig", "/usr/sbin/ldconfig"].first { access($0, X_OK) == 0 }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// A field of an fstab line (spaces, tabs, newlines and backslashes escaped).
    static func escape(_ field: String) -> String {
        var result = ""
        for character in field {
            switch character {
            case " ": result += "\\040"
            case "\t": result += "\\011"
            case "\n": result += "\\012"
            case "\\": result += "\\134"
            default: result.append(character)
            }
        }
        return result
    }

}
