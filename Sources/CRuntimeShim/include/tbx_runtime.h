// CRuntimeShim: the C that the container runtime (ns-enter, hook-run) cannot do without.
// - The squashfs FUSE server: libsquashfuse's low-level operations, whose headers cannot be
//   imported into Swift, served from a detached process that must be forked (and set up) with
//   C code only, before any namespace is entered.
// - System calls that Glibc does not wrap (pivot_root, openat2, mount_setattr, pidfd_open) and variadic ones
//   that Swift cannot call (ioctl for loop devices, prctl).
// Kept apart from CToolboxShim so that the runtime commands do not load libcurl at start-up.
#ifndef TBX_RUNTIME_H
#define TBX_RUNTIME_H

#include <stdint.h>
#include <sys/types.h>

// Starts a FUSE server for the squashfs `image`, as a grandchild in its own session with stdio
// on /dev/null, every file owned by uid/gid (ids as seen in the container). Call it before
// entering the container's namespaces, so that the server is outside them. It returns at once
// (0, or -errno) with two descriptors: *status, on which tbx_fuse_server_ready reports whether
// the server could open the image, and *channel, a socket. Then, inside the user namespace: open
// /dev/fuse, mount "fd=N", and hand the descriptor to the server with tbx_fuse_server_go.
// Closing the channel instead makes the server exit. The server ends when its file system is
// unmounted (also when the last process of its mount namespace exits).
int tbx_fuse_server_start(const char *image, uint32_t uid, uint32_t gid, int *status, int *channel, pid_t *helper);
// Makes the next server started keep the blocks it decompresses in `directory` (one file per
// block, for the other containers of the same image to read instead of decompressing), up to
// `limit` bytes written by that server; NULL for none.
void tbx_fuse_server_set_cache(const char *directory, uint64_t limit);

// Reaps the helper process that started the server, waits for the server's report and closes
// `status`: the server's pid, or -errno (-EINVAL: the image is not a readable squashfs).
pid_t tbx_fuse_server_ready(int status, pid_t helper);
// Sends the mounted /dev/fuse descriptor to the server and closes the channel. 0 or -errno.
int tbx_fuse_server_go(int channel, int fuse_fd);

// pivot_root(2).
int tbx_pivot_root(const char *new_root, const char *put_old);

// pidfd_open(2): a descriptor that becomes readable when the process `pid` exits, so that a
// parent can wait for a child with poll(2) and a timeout. -1 (errno, ENOSYS before Linux 5.3).
int tbx_pidfd_open(int pid);

// openat2(2) resolving `path` as if `root_fd` were the root directory (RESOLVE_IN_ROOT, no magic
// links): symbolic links in the image cannot lead outside it. Returns a descriptor or -1 (errno).
int tbx_open_in_root(int root_fd, const char *path, int flags, uint32_t mode);

// mount_setattr(2) on the mount at path (relative to dir_fd): attributes set and cleared
// (MOUNT_ATTR_*), with AT_RECURSIVE when `recursive`. 0 or -1 (errno).
int tbx_mount_setattr(int dir_fd, const char *path, int recursive, uint64_t attr_set, uint64_t attr_clr);

// Attaches the open squashfs file to a free loop device, read-only and detached automatically
// when unmounted; writes its path into `device`. Returns the loop device's descriptor or -errno.
int tbx_loop_attach(int image_fd, char *device, size_t size);

// Runs `argv` (argv[0] an absolute path) as a detached grandchild in its own session, stdio on
// /dev/null, signals unblocked and at their defaults: nobody's child here, so that a shell in the
// container that waits for its children does not wait for it. With `own_mount_namespace` it
// runs in a mount namespace of its own (a copy of the caller's), which the caller's pivot_root
// then does not touch. Returns its pid or -errno.
pid_t tbx_spawn_detached(char *const argv[], int own_mount_namespace);

// Starts a hook's service (an SSH server, the CUDA MPS daemon) inside the container: a child in
// its own session (hook-run's kill of the hook's process group spares it), its root `root`
// (chroot, the working directory /), no ambient capabilities, stdin on /dev/null, stdout and
// stderr appended to `log` (a path inside the container; /dev/null when NULL or it cannot be
// opened), then execvpe(argv[0], argv, envp). Returns its pid once the exec succeeded, or -errno
// (of chroot, or of the exec).
pid_t tbx_spawn_service(const char *root, char *const argv[], char *const envp[], const char *log);

// Makes every capability this process has in its user namespace ambient, so that the programs it
// starts while the container is built (hooks, fuse-overlayfs) keep them across exec although
// they run as the (non-root) user, as enroot's hooks do. 0 or -errno.
int tbx_raise_ambient_capabilities(void);
// Drops the ambient and inheritable capabilities again (before the user's command is executed).
int tbx_clear_ambient_capabilities(void);

// The id of the mount an open file is on (statx STATX_MNT_ID), or 0.
uint64_t tbx_mount_id(int fd);

// prctl(PR_SET_NAME).
int tbx_set_process_name(const char *name);

// GNU functions Swift's Glibc module does not expose (it is built without _GNU_SOURCE).
// unshare(2) of a new mount namespace, and with `user` first a user namespace.
int tbx_unshare(int user);
// setns(2) into a user (user != 0) or mount namespace.
int tbx_setns(int fd, int user);
// memfd_create(2) without flags (the descriptor is inherited across exec).
int tbx_memfd(const char *name);
// pipe2(2) with O_CLOEXEC.
int tbx_pipe_cloexec(int fds[2]);
// Closes every descriptor from `first` on.
int tbx_close_from(int first);

// The hooks' guard: a child process that, should this process die while the hooks run or before
// the container is handed over (SIGKILL leaves no chance to clean up), kills the hooks' process
// groups it was told of and the services listed in `services_file` (TOOLBOX_HOOK_PIDS: a pid per
// line), and empties and removes `work_directory` (hook-run's scratch directory). Returns the
// descriptor to report to (close-on-exec) and sets *guard, or -errno.
int tbx_guard_start(const char *services_file, const char *work_directory, int *guard);
// Tells the guard about a hook's process group.
void tbx_guard_watch(int fd, int process_group);
// The hooks and services are in other hands now: the guard exits without killing anything.
void tbx_guard_release(int fd, int guard);

// MOUNT_ATTR_* values (not in Debian 12's Glibc headers).
extern const uint64_t TBX_MOUNT_ATTR_RDONLY;
extern const uint64_t TBX_MOUNT_ATTR_NOSUID;
extern const uint64_t TBX_MOUNT_ATTR_NODEV;
// O_PATH (needs _GNU_SOURCE, which Swift's Glibc module is not built with).
extern const int TBX_O_PATH;

#endif
