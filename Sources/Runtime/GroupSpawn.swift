import Glibc

/// posix_spawn attributes for a child in a process group of its own (what it leaves running is
/// stopped with its group), every signal at its default and none blocked. Making them also puts
/// this process's SIGCHLD back to its default: one inherited as ignored would reap the child
/// before waitpid could see its status. Used for the hooks and the image's entrypoint.
public final class GroupSpawnAttributes {
    public var attributes = posix_spawnattr_t()

    public init() {
        posix_spawnattr_init(&attributes)
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        signal(SIGCHLD, SIG_DFL)
    }

    deinit { posix_spawnattr_destroy(&attributes) }
}
