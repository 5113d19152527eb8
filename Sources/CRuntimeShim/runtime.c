#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tbx_runtime.h"

const uint64_t TBX_MOUNT_ATTR_RDONLY = MOUNT_ATTR_RDONLY;
const uint64_t TBX_MOUNT_ATTR_NOSUID = MOUNT_ATTR_NOSUID;
const uint64_t TBX_MOUNT_ATTR_NODEV = MOUNT_ATTR_NODEV;
const int TBX_O_PATH = O_PATH;

int tbx_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int tbx_open_in_root(int root_fd, const char *path, int flags, uint32_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
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

int tbx_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

int tbx_unshare(int user) { return unshare(CLONE_NEWNS | (user ? CLONE_NEWUSER : 0)); }

int tbx_setns(int fd, int user) { return setns(fd, user ? CLONE_NEWUSER : CLONE_NEWNS); }

int tbx_memfd(const char *name) { return memfd_create(name, 0); }

int tbx_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int tbx_close_from(int first) { return close_range((unsigned int)first, ~0U, 0); }
