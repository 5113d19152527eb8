#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import OCI
import ToolboxCore

/// The cache key of a build: what decides its result. Two builds with the same key give the same
/// image, so the second is not run. The key covers the Containerfile's bytes, every entry of the
/// build context (path, type, permission bits, and a file's bytes or a link's target; owners and
/// times are left out, as builders ignore them too), the base image's digest, the build
/// arguments, the builder and the architecture.
public struct BuildKey: Sendable {
    public var containerfile: [UInt8]
    public var context: String
    public var base: String?
    public var buildArgs: [String: String]
    public var builder: String
    public var architecture: String
    /// Directories inside the context that are not part of it: the toolbox's own cache and image
    /// store, when they lie there (else every build would change the next one's key).
    public var excluded: Set<String> = []

    public init(containerfile: [UInt8], context: String, base: String?, buildArgs: [String: String], builder: String, architecture: String) {
        self.containerfile = containerfile
        self.context = context
        self.base = base
        self.buildArgs = buildArgs
        self.builder = builder
        self.architecture = architecture
    }

    /// Walks the context and hashes it all; a file that cannot be read is an error (the builder
    /// could not send it either).
    public func digest() throws(Diagnostic) -> Digest {
        let hasher = Hasher()
        let add = hasher.add
        add("toolbox-build-key 1")
        add("builder \(builder)")
        add("architecture \(architecture)")
        add("base \(base ?? "-")")
        for name in buildArgs.keys.sorted() { add("arg \(name)=\(buildArgs[name] ?? "")") }
        add("containerfile \(containerfile.count)")
        hasher.digest.update(containerfile)
        try walk(context, relative: ".", into: hasher)
        return hasher.digest.finalize()
    }

    /// The running digest, shared by the walk's levels.
    private final class Hasher {
        var digest = StreamingDigest()

        func add(_ text: String) {
            var bytes = Array(text.utf8)
            bytes.append(0)
            digest.update(bytes)
        }
    }

    private func walk(_ path: String, relative: String, into hasher: Hasher) throws(Diagnostic) {
        let add = hasher.add
        guard let names = FileReader.names(inDirectory: path) else {
            throw Diagnostic(
                kind: .unreadable, file: path, message: "cannot list the build context directory: \(String(cString: strerror(errno)))",
                hint: "the build context is the Containerfile's directory: make it readable, or move the Containerfile to a directory of its own")
        }
        for name in names.sorted() {
            let full = path + "/" + name
            let label = relative + "/" + name
            if excluded.contains(full) { continue }
            var info = stat()
            guard lstat(full, &info) == 0 else {
                throw Diagnostic(kind: .unreadable, file: full, message: "cannot read the build context: \(String(cString: strerror(errno)))")
            }
            let permissions = String(info.st_mode & 0o7777, radix: 8)
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                add("dir \(label) \(permissions)")
                try walk(full, relative: label, into: hasher)
            case S_IFREG:
                add("file \(label) \(permissions) \(info.st_size)")
                let fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else {
                    throw Diagnostic(
                        kind: .unreadable, file: full, message: "cannot read a file of the build context: \(String(cString: strerror(errno)))",
                        hint: "make it readable, or move it out of the Containerfile's directory")
                }
                defer { close(fd) }
                try FileReader.stream(fd, path: full) { (chunk: UnsafeRawBufferPointer) throws(Diagnostic) in hasher.digest.update(chunk) }
            case S_IFLNK:
                add("link \(label) \(FileReader.link(full) ?? "")")
            default:
                add("other \(label) \(info.st_mode & S_IFMT)")
            }
        }
    }
}
