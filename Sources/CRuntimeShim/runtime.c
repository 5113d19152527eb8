#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "tbx_runtime.h"

const uint64_t TBX_MOUNT_ATTR_RDONLY = MOUNT_ATTR_RDONLY;
const uint64_t TBX_MOUNT_ATTR_NOSUID = MOUNT_ATTR_NOSUID;
const uint64_t TBX_MOUNT_ATTR_NODEV = MOUNT_ATTR_NODEV;
const int TBX_O_PATH = O_PATH;

int tbx_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int tbx_pidfd_open(int pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int tbx_open_in_root(int root_fd, const char *path, int flags, uint32_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    // With RESOLVE_IN_ROOT the kernel answers EAGAIN when a ".." step (an image's
    // /var/run -> ../run) races with a mount or a rename anywhere on the machine, and asks the
    // caller to try again (openat2(2)). On a node where other jobs start containers, that is
    // common: try again, yielding the processor after the first few.
    int fd = -1;
    for (int attempt = 0; attempt < 10000; attempt++) {
        fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
        if (fd >= 0 || errno != EAGAIN) break;
        if (attempt >= 8) sched_yield();
    }
    return fd;
}

int tbx_mount_setattr(int dir_fd, const char *path, int recursive, uint64_t attr_set, uint64_t attr_clr) {
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = attr_set;
    attr.attr_clr = attr_clr;
    unsigned int flags = recursive ? AT_RECURSIVE : 0;
    return (int)syscall(SYS_mount_setattr, dir_fd, path, flags, &attr, sizeof(attr));
}

int tbx_loop_attach(int image_fd, char *device, size_t size) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -errno;
    for (int attempt = 0; attempt < 16; attempt++) {
        int number = ioctl(control, LOOP_CTL_GET_FREE);
        if (number < 0) {
            int error = errno;
            close(control);
            return -error;
        }
        snprintf(device, size, "/dev/loop%d", number);
        int loop = open(device, O_RDONLY | O_CLOEXEC);
        if (loop < 0) {
            int error = errno;
            close(control);
            return -error;
        }
        struct loop_config config;
        memset(&config, 0, sizeof(config));
        config.fd = (uint32_t)image_fd;
        config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        if (ioctl(loop, LOOP_CONFIGURE, &config) == 0) {
            close(control);
            return loop;
        }
        int error = errno;
        if (error == EINVAL) {
            // Direct I/O needs an aligned backing file system: try again without it.
            config.info.lo_flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO;
            if (ioctl(loop, LOOP_CONFIGURE, &config) == 0) {
                close(control);
                return loop;
            }
            error = errno;
        }
        close(loop);
        if (error != EBUSY) {
            close(control);
            return -error;
        }
        // Another process took this device between GET_FREE and CONFIGURE: ask again.
    }
    close(control);
    return -EBUSY;
}

int tbx_set_process_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

int tbx_unshare(int user) { return unshare(CLONE_NEWNS | (user ? CLONE_NEWUSER : 0)); }

int tbx_setns(int fd, int user) { return setns(fd, user ? CLONE_NEWUSER : CLONE_NEWNS); }

int tbx_memfd(const char *name) { return memfd_create(name, 0); }

int tbx_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int tbx_close_from(int first) { return close_range((unsigned int)first, ~0U, 0); }

// The guard's work once its reporter is gone: only async-signal-safe calls (it is a fork of a
// possibly multithreaded process).
static void guard_clean_up(int services, const int *groups, int count) {
    for (int i = 0; i < count; i++) kill(-groups[i], SIGKILL);
    if (services < 0) return;
    char text[8192];
    ssize_t got = pread(services, text, sizeof(text) - 1, 0);
    if (got <= 0) return;
    text[got] = '\0';
    int pids[512];
    int found = 0;
    long value = 0;
    int digits = 0;
    for (ssize_t i = 0; i <= got && found < 512; i++) {
        char c = i < got ? text[i] : '\n';
        if (c >= '0' && c <= '9' && digits < 9) {
            value = value * 10 + (c - '0');
            digits++;
        } else {
            if (digits > 0 && value > 1) pids[found++] = (int)value;
            value = 0;
            digits = 0;
        }
    }
    for (int i = 0; i < found; i++) kill(pids[i], SIGTERM);
    // Two seconds to stop, as ns-enter gives them, then SIGKILL.
    for (int round = 0; round < 20; round++) {
        int alive = 0;
        for (int i = 0; i < found; i++) {
            if (pids[i] > 0 && kill(pids[i], 0) == 0) alive++;
        }
        if (alive == 0) return;
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    for (int i = 0; i < found; i++) kill(pids[i], SIGKILL);
}

// Removes what is in the directory `fd` (and below it, `depth` levels at most) with system calls
// alone: the guard is a fork of a possibly multithreaded process (no opendir, no malloc).
static void guard_empty_directory(int fd, int depth) {
    char buffer[4096];
    // Each pass reads the listing from the start (removals change it); a pass that removes
    // nothing (only "." and ".." left, or what cannot be removed) is the last.
    for (int pass = 0; pass < 64; pass++) {
        int removed = 0;
        lseek(fd, 0, SEEK_SET);
        long got = syscall(SYS_getdents64, fd, buffer, sizeof(buffer));
        if (got <= 0) return;
        for (long offset = 0; offset < got;) {
            struct {
                uint64_t inode;
                int64_t next;
                unsigned short length;
                unsigned char type;
                char name[];
            } *entry = (void *)(buffer + offset);
            offset += entry->length;
            if (strcmp(entry->name, ".") == 0 || strcmp(entry->name, "..") == 0) continue;
            if (unlinkat(fd, entry->name, 0) == 0) {
                removed++;
                continue;
            }
            if (errno != EISDIR || depth <= 0) continue;
            int below = openat(fd, entry->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (below < 0) continue;
            guard_empty_directory(below, depth - 1);
            close(below);
            if (unlinkat(fd, entry->name, AT_REMOVEDIR) == 0) removed++;
        }
        if (removed == 0) return;
    }
}

int tbx_guard_start(const char *services_file, const char *work_directory, int *guard) {
    int channel[2];
    if (pipe2(channel, O_CLOEXEC) != 0) return -errno;
    int services = open(services_file, O_RDONLY | O_CLOEXEC);
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(channel[0]);
        close(channel[1]);
        if (services >= 0) close(services);
        return -error;
    }
    if (child == 0) {
        prctl(PR_SET_NAME, "ns-enter-guard", 0, 0, 0);
        // Its two descriptors on 3 and 4, nothing else (the name's lock, the container's files:
        // not held by the guard), parked above 100 first so that placing one cannot close the other.
        int parked_channel = fcntl(channel[0], F_DUPFD, 100);
        int parked_services = services >= 0 ? fcntl(services, F_DUPFD, 100) : -1;
        if (parked_channel < 0 || dup2(parked_channel, 3) != 3) _exit(0);
        channel[0] = 3;
        if (parked_services >= 0 && dup2(parked_services, 4) == 4) {
            services = 4;
            close_range(5, ~0U, 0);
        } else {
            services = -1;
            close_range(4, ~0U, 0);
        }
        sigset_t all;
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigprocmask(SIG_SETMASK, &all, NULL);
        int groups[256];
        int count = 0;
        for (;;) {
            int32_t message;
            ssize_t got = read(channel[0], &message, sizeof(message));
            if (got < 0 && errno == EINTR) continue;
            if (got == (ssize_t)sizeof(message) && message == 0) _exit(0);
            if (got == (ssize_t)sizeof(message)) {
                if (count < 256) groups[count++] = message;
                continue;
            }
            guard_clean_up(services, groups, count);
            // hook-run's scratch directory: no one else removes it now.
            if (work_directory != NULL && work_directory[0] == '/') {
                int directory = open(work_directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (directory >= 0) {
                    guard_empty_directory(directory, 3);
                    close(directory);
                    rmdir(work_directory);
                }
            }
            _exit(0);
        }
    }
    close(channel[0]);
    if (services >= 0) close(services);
    *guard = child;
    return channel[1];
}

void tbx_guard_watch(int fd, int process_group) {
    int32_t message = process_group;
    if (fd >= 0 && process_group > 0) {
        ssize_t ignored = write(fd, &message, sizeof(message));
        (void)ignored;
    }
}

void tbx_guard_release(int fd, int guard) {
    if (fd < 0) return;
    int32_t message = 0;
    ssize_t ignored = write(fd, &message, sizeof(message));
    (void)ignored;
    close(fd);
    int status;
    while (guard > 0 && waitpid(guard, &status, 0) < 0 && errno == EINTR) {
    }
}

// Forks a child in a session of its own, signals unblocked and at their defaults, that keeps the
// write end of `report` (the parent keeps the read end). Returns as fork does, or -errno.
static pid_t fork_reporting(int report[2]) {
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return -error;
    }
    if (child == 0) {
        close(report[0]);
        setsid();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int signal_number = 1; signal_number < NSIG; signal_number++) signal(signal_number, SIG_DFL);
    }
    return child;
}

pid_t tbx_spawn_detached(char *const argv[], int own_mount_namespace) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t child = fork_reporting(report);
    if (child < 0) return child;
    if (child == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            int null_fd = open("/dev/null", O_RDWR);
            if (null_fd >= 0) {
                dup2(null_fd, 0);
                dup2(null_fd, 1);
                dup2(null_fd, 2);
            }
            close_range(3, ~0U, 0);
            if (own_mount_namespace && unshare(CLONE_NEWNS) != 0) _exit(126);
            execv(argv[0], argv);
            _exit(127);
        }
        int32_t pid = grandchild < 0 ? -errno : grandchild;
        ssize_t ignored = write(report[1], &pid, sizeof(pid));
        (void)ignored;
        _exit(0);
    }
    close(report[1]);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    int32_t pid = -EIO;
    ssize_t got;
    do {
        got = read(report[0], &pid, sizeof(pid));
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    return got == (ssize_t)sizeof(pid) ? (pid_t)pid : -EIO;
}

pid_t tbx_spawn_service(const char *root, char *const argv[], char *const envp[], const char *log) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t child = fork_reporting(report);
    if (child < 0) return child;
    if (child == 0) {
        int error = 0;
        if (chroot(root) != 0 || chdir("/") != 0) error = errno;
        if (error == 0) {
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
            int null_fd = open("/dev/null", O_RDWR);
            // O_NONBLOCK: a fifo at the log's path must not block the start (checked before).
            int log_fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK, 0600) : -1;
            if (log_fd >= 0) fcntl(log_fd, F_SETFL, O_APPEND);
            if (log_fd < 0) log_fd = null_fd;
            if (null_fd >= 0) dup2(null_fd, 0);
            if (log_fd >= 0) {
                dup2(log_fd, 1);
                dup2(log_fd, 2);
            }
            if (report[1] <= 2) {
                int moved = fcntl(report[1], F_DUPFD_CLOEXEC, 3);
                if (moved >= 0) report[1] = moved;
            }
            close_range(3, report[1] - 1 >= 3 ? (unsigned int)report[1] - 1 : 2, 0);
            close_range((unsigned int)report[1] + 1, ~0U, 0);
            execvpe(argv[0], argv, envp);
            error = errno;
        }
        ssize_t ignored = write(report[1], &error, sizeof(error));
        (void)ignored;
        _exit(127);
    }
    close(report[1]);
    int error = 0;
    ssize_t got;
    do {
        got = read(report[0], &error, sizeof(error));
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof(error)) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return -error;
    }
    return child;
}

int tbx_raise_ambient_capabilities(void) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) return -errno;
    data[0].inheritable = data[0].permitted;
    data[1].inheritable = data[1].permitted;
    if (syscall(SYS_capset, &header, data) != 0) return -errno;
    for (int capability = 0; capability <= CAP_LAST_CAP; capability++) {
        uint32_t word = data[capability / 32].permitted;
        if (!(word & (1u << (capability % 32)))) continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, capability, 0, 0) != 0 && errno != EINVAL) return -errno;
    }
    return 0;
}

int tbx_clear_ambient_capabilities(void) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return -errno;
    // The inheritable set too (raised with the ambient one for the hooks): a program the command
    // runs must not gain capabilities from file capabilities' inheritable bits.
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) return -errno;
    data[0].inheritable = 0;
    data[1].inheritable = 0;
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -errno;
}

uint64_t tbx_mount_id(int fd) {
    struct statx info;
    memset(&info, 0, sizeof(info));
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &info) != 0) return 0;
    return (info.stx_mask & STATX_MNT_ID) ? info.stx_mnt_id : 0;
}
