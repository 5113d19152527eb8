#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ToolboxCore

/// Where squashfs images of registry images are kept, and what they are called: the reference
/// system's image store (`$EDF_IMAGESTORE`, else `$SCRATCH/.edf_imagestore`), one file per
/// image and architecture named `<registry+repository>+<tag>.<arch>.sqsh`.
public enum ImageStore {
    public struct Location: Sendable, Equatable {
        public var directory: String
        /// `EDF_IMAGESTORE=void`: the image is built for this job only and removed at its end.
        public var temporary: Bool
    }

    /// `EDF_IMAGESTORE` (an absolute directory, or `void`), else `$SCRATCH/.edf_imagestore`, else
    /// `images` in the layer cache the image was pulled into (`cache`), else in the default one.
    public static func location(environment: [String: String], cache pulledInto: String? = nil) throws(Diagnostic) -> Location {
        if let value = environment["EDF_IMAGESTORE"], !value.isEmpty {
            if value == "void" {
                // $SCRATCH when set, which the compute nodes of a multi-node step see (a login
                // node's /tmp they do not), else $TMPDIR. A directory per run of img-squash (each
                // step its own image, removed when that step ends: steps of one job must not
                // remove each other's), inside one per job for the epilog to clean up after.
                let base = [environment["SCRATCH"], environment["TMPDIR"]].compactMap { $0 }.first { $0.hasPrefix("/") } ?? "/tmp"
                let job = environment["SLURM_JOB_ID"].map { "job-\($0)" } ?? "pid-\(getpid())"
                let mine = "\(base)/toolbox-images-\(getuid())"
                let jobDirectory = "\(mine)/\(job)"
                let directory = environment["SLURM_JOB_ID"] == nil ? jobDirectory : "\(jobDirectory)/run-\(getpid())"
                // Another step of the job that ends removes the job's directory when it is empty:
                // made again when it went between the two mkdirs.
                for attempt in 1...3 {
                    do {
                        try makeDirectories(directory)
                        break
                    } catch {
                        if attempt == 3 || FileReader.kind(of: jobDirectory) != .missing { throw error }
                    }
                }
                // In a shared /tmp another user may have made the directory first: one that is not
                // this user's own and private would let them put another image in place of ours.
                for path in Set([mine, jobDirectory, directory]).sorted() {
                    var info = stat()
                    guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == getuid() else {
                        throw Diagnostic(
                            kind: .output, file: path, message: "is not a directory of this user's own: the temporary image cannot go there",
                            hint: "another user made it (in a shared TMPDIR); set TMPDIR to a private directory, or remove it")
                    }
                    if info.st_mode & 0o077 != 0 && chmod(path, 0o700) != 0 {
                        throw Diagnostic(kind: .output, file: path, message: "cannot make it private: \(String(cString: strerror(errno)))")
                    }
                }
                return Location(directory: directory, temporary: true)
            }
            guard value.hasPrefix("/") else {
                throw Diagnostic(kind: .invalid, key: "EDF_IMAGESTORE", message: "\"\(value)\" is not an absolute path", hint: "give an existing absolute directory, or void for no image store")
            }
            var info = stat()
            guard stat(value, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw Diagnostic(kind: .notFound, key: "EDF_IMAGESTORE", message: "\"\(value)\" is not an existing directory", hint: "create it, or set EDF_IMAGESTORE=void for no image store")
            }
            ContentStore.shareWithGroup(value)
            return Location(directory: value, temporary: false)
        }
        let directory: String
        if let scratch = environment["SCRATCH"], scratch.hasPrefix("/") {
            directory = scratch + "/.edf_imagestore"
        } else if let cache = pulledInto.flatMap({ $0.hasPrefix("/") ? $0 : nil }) ?? ContentStore.defaultRoot(environment: environment) {
            directory = cache + "/images"
        } else {
            throw Diagnostic(kind: .invalid, message: "no image store: neither EDF_IMAGESTORE, SCRATCH nor HOME is set", hint: "set EDF_IMAGESTORE or give -o FILE")
        }
        try makeDirectories(directory)
        ContentStore.shareWithGroup(directory)
        return Location(directory: directory, temporary: false)
    }

    public static func makeDirectories(_ path: String) throws(Diagnostic) {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/" + part
            var info = stat()
            if stat(prefix, &info) == 0 { continue }
            try ContentStore.makeDirectory(prefix)
        }
    }

    /// The file name of an image: registry and repository with `/` turned into `+` (Docker Hub's
    /// registry and `library/` left out, as enroot names its files), `+<tag>` (else the digest),
    /// then `.<arch>.sqsh` with the architecture as `uname -m` says it.
    public static func fileName(registry: String, repository: String, tag: String?, digest: String?, architecture: String) -> String {
        // A local layout or archive names its path as the repository: no leading "+".
        var path = String(repository.drop { $0 == "/" })
        let dockerHub = ["registry-1.docker.io", "docker.io", "index.docker.io"].contains(registry)
        if dockerHub {
            if path.hasPrefix("library/") { path.removeFirst("library/".count) }
        } else {
            path = registry + "/" + path
        }
        var name = path.replacingSlashes()
        if let tag {
            // A local archive's tag is the name it was saved under (nvcr.io/nvidia/pytorch:24.01):
            // one file name all the same, never a path into a subdirectory.
            name += "+" + tag.replacingSlashes()
        } else if let digest {
            name += "+" + digest.replacingOccurrences(of: ":", with: "-")
        }
        return shortened(name) + "." + machineName(architecture) + ".sqsh"
    }

    /// The longest name before `.<arch>.sqsh`, in bytes: the image's temporary file beside it
    /// (`.<file>.tmp.<pid>`) and its `.json` and `.lock` must fit the 255 bytes a file name has.
    public static let longestName = 200

    /// A name longer than `longestName` keeps its beginning and ends with 16 hexadecimal digits
    /// of its SHA-256 (repository paths and tags may each be 255 characters long).
    static func shortened(_ name: String) -> String {
        guard name.utf8.count > longestName else { return name }
        let hash = Digest(of: Array(name.utf8)).hex.prefix(16)
        var kept = ""
        var bytes = 0
        for character in name {
            let size = character.utf8.count
            guard bytes + size <= longestName - 17 else { break }
            kept.append(character)
            bytes += size
        }
        return kept + "+" + hash
    }

    /// OCI architecture names as `uname -m` prints them.
    public static func machineName(_ architecture: String) -> String {
        switch architecture {
        case "amd64": "x86_64"
        case "arm64": "aarch64"
        case "386": "i686"
        case "arm": "armv7l"
        default: architecture
        }
    }
}

extension String {
    fileprivate func replacingSlashes() -> String { String(map { $0 == "/" ? "+" : $0 }) }

    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

/// An exclusive lock on `<image>.lock` that removes its file when released, so that no lock files
/// pile up beside the images. A process that wakes up holding the lock of a file that was removed
/// meanwhile starts over with the new file.
public final class ImageLock {
    private let fd: Int32
    private let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Takes the lock; `waiting` is called once if another process holds it.
    public static func acquire(_ path: String, waiting: () -> Void) throws(Diagnostic) -> ImageLock {
        var announced = false
        while true {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o664)
            guard fd >= 0 else {
                let code = errno
                if code == ELOOP {
                    // Never followed: in a store shared by a group, it could point at anyone's file.
                    throw Diagnostic(
                        kind: .output, file: path, message: "the lock file is a symbolic link, which img-squash never makes",
                        hint: "remove it (rm \(path)) and run again")
                }
                throw Diagnostic(
                    kind: .output, file: path, message: "cannot create the lock file: \(String(cString: strerror(code)))",
                    hint: "the image goes into a directory this user can write: set EDF_IMAGESTORE (or -o) to one")
            }
            var blocking = false
            while flock(fd, LOCK_EX | (blocking ? 0 : LOCK_NB)) != 0 {
                if errno == EINTR { continue }
                if errno == EWOULDBLOCK && !blocking {
                    if !announced { waiting() }
                    announced = true
                    blocking = true
                    continue
                }
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Diagnostic(kind: .output, file: path, message: "cannot lock: \(reason)")
            }
            var held = stat()
            var current = stat()
            if fstat(fd, &held) == 0 && stat(path, &current) == 0 && held.st_ino == current.st_ino && held.st_dev == current.st_dev {
                return ImageLock(fd: fd, path: path)
            }
            close(fd)
        }
    }

    public func release() {
        unlink(path)
        close(fd)
    }
}
