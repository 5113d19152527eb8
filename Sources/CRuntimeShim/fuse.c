// The squashfs FUSE server: libsquashfuse's low-level operations (the library that squashfuse_ll
// is built from), with lookup and getattr of our own so that every file appears owned by the
// container's user (as enroot mounts with squashfuse -o uid,gid): without that, files owned by
// root in the image would belong to an unmapped user inside the user namespace and the overlay
// could not copy them up.
#define _GNU_SOURCE
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 32
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#include "tbx_runtime.h"

// Exported by libsquashfuse_ll but declared in a header that Debian does not install.
sqfs_err sqfs_stat(sqfs *fs, sqfs_inode *inode, struct stat *st);

// The libraries, loaded with dlopen by the server process alone: libsquashfuse_ll brings
// libfuse3 and five decompression libraries (eight shared objects). Linked into ns-enter, they
// were mapped and relocated by every process that starts from it (a task joining a running
// container, hook-run, toolbox-hook), none of which calls them: 0.44 ms of a 4.8 ms join.
static const char squashfuse_library[] = "libsquashfuse_ll.so.0";

#define TBX_FUSE_FUNCTIONS(X) \
    X(sqfs_ll_iget) \
    X(sqfs_stat) \
    X(sqfs_dentry_init) \
    X(sqfs_dir_lookup) \
    X(sqfs_inode_get) \
    X(sqfs_dentry_inode) \
    X(sqfs_read_range) \
    X(sqfs_dir_open) \
    X(sqfs_dir_next) \
    X(sqfs_dentry_mode) \
    X(sqfs_dentry_name) \
    X(sqfs_dentry_next_offset) \
    X(sqfs_ll_open) \
    X(sqfs_ll_op_create) \
    X(sqfs_ll_op_readlink) \
    X(sqfs_ll_op_listxattr) \
    X(sqfs_ll_op_getxattr) \
    X(sqfs_ll_op_forget) \
    X(stfs_ll_op_statfs) \
    X(fuse_reply_err) \
    X(fuse_reply_attr) \
    X(fuse_reply_entry) \
    X(fuse_reply_buf) \
    X(fuse_add_direntry) \
    X(fuse_session_exited) \
    X(fuse_session_receive_buf) \
    X(fuse_session_process_buf) \
    X(fuse_session_new) \
    X(fuse_session_mount)

// A pointer per function, of the function's own type (from the headers).
static struct {
#define X(name) __typeof__(&name) name;
    TBX_FUSE_FUNCTIONS(X)
#undef X
} lib;

// libsquashfuse before 0.2.0 (Debian 12 ships 0.1.105) has the squashfs xattr types 1 and 2 the
// wrong way round in its table of name prefixes (upstream commit a28c1a4): trusted.* attributes
// were listed and read as security.* and the other way round (security.capability, SELinux
// labels). The table is the library's writable data, exported: put right once it is loaded,
// where it is in the old order (a fixed library is left alone).
typedef struct {
    const char *prefix;
    size_t len;
} tbx_xattr_prefix;

static void correct_xattr_prefixes(void *handle) {
    tbx_xattr_prefix *table = (tbx_xattr_prefix *)dlsym(handle, "sqfs_xattr_prefixes");
    if (table == NULL || table[1].prefix == NULL || table[2].prefix == NULL) return;
    if (strcmp(table[1].prefix, "security.") == 0 && strcmp(table[2].prefix, "trusted.") == 0) {
        tbx_xattr_prefix swapped = table[1];
        table[1] = table[2];
        table[2] = swapped;
    }
}

// Loads the libraries and finds every function; ELIBACC when either fails.
static int load_libraries(void) {
    void *handle = dlopen(squashfuse_library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) return ELIBACC;
#define X(name) \
    lib.name = (__typeof__(&name))dlsym(handle, #name); \
    if (lib.name == NULL) return ELIBACC;
    TBX_FUSE_FUNCTIONS(X)
#undef X
    correct_xattr_prefixes(handle);
    return 0;
}

static const double entry_timeout = DBL_MAX;
static uid_t owner_uid;
// The node-local cache of decompressed blocks (tbx_fuse_server_set_cache), or "" for none.
static char cache_dir[4096];
static uint64_t cache_limit;
static uint64_t cache_written;
static gid_t owner_gid;

static void owned(struct stat *st) {
    st->st_uid = owner_uid;
    st->st_gid = owner_gid;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    sqfs_ll_i lli;
    if (lib.sqfs_ll_iget(req, &lli, ino)) return;  // it replied with the error
    struct stat st;
    memset(&st, 0, sizeof(st));
    if (lib.sqfs_stat(&lli.ll->fs, &lli.inode, &st)) {
        lib.fuse_reply_err(req, ENOENT);
        return;
    }
    st.st_ino = ino;
    owned(&st);
    lib.fuse_reply_attr(req, &st, entry_timeout);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    sqfs_ll_i lli;
    if (lib.sqfs_ll_iget(req, &lli, parent)) return;
    if (!S_ISDIR(lli.inode.base.mode)) {
        lib.fuse_reply_err(req, ENOTDIR);
        return;
    }
    sqfs_name buffer;
    sqfs_dir_entry entry;
    bool found = false;
    lib.sqfs_dentry_init(&entry, buffer);
    if (lib.sqfs_dir_lookup(&lli.ll->fs, &lli.inode, name, strlen(name), &entry, &found)) {
        lib.fuse_reply_err(req, EIO);
        return;
    }
    struct fuse_entry_param reply;
    memset(&reply, 0, sizeof(reply));
    reply.attr_timeout = entry_timeout;
    reply.entry_timeout = entry_timeout;
    if (!found) {
        // Inode 0: "no such entry", cached by the kernel like a positive answer.
        lib.fuse_reply_entry(req, &reply);
        return;
    }
    sqfs_inode inode;
    if (lib.sqfs_inode_get(&lli.ll->fs, &inode, lib.sqfs_dentry_inode(&entry))) {
        lib.fuse_reply_err(req, ENOENT);
        return;
    }
    if (lib.sqfs_stat(&lli.ll->fs, &inode, &reply.attr)) {
        lib.fuse_reply_err(req, EIO);
        return;
    }
    reply.ino = lli.ll->ino_register(lli.ll, &entry);
    reply.attr.st_ino = reply.ino;
    owned(&reply.attr);
    lib.fuse_reply_entry(req, &reply);
}

// No OPEN and OPENDIR requests: answered ENOSYS once, the kernel stops sending them (and their
// RELEASE), keeps file pages cached across opens and caches directory listings. Python importing
// a few hundred modules saves two round trips per file. READ and READDIR then find the inode by
// its number instead of a handle.
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    (void)fi;
    lib.fuse_reply_err(req, ENOSYS);
}

// The last blocks the server decompressed, in memory. The kernel asks for a file in pieces that
// do not follow squashfs's blocks (16 KiB for a page fault, 128 KiB of readahead, at offsets of
// its own), so without this one block is decompressed again for each piece: starting a static
// 760 KiB program decompressed its 6 blocks 15 times. Least recently used goes first.
#define MEMORY_CACHE_BYTES (8u << 20)
#define MEMORY_CACHE_MAX_ENTRIES 64
struct memory_block {
    uint64_t inode;
    uint64_t block;
    uint64_t length;
    uint64_t used;  // the clock when last used; 0: empty
    char *data;
};
static struct memory_block memory_cache[MEMORY_CACHE_MAX_ENTRIES];
static uint64_t memory_clock;

static unsigned memory_entries(uint64_t block_size) {
    uint64_t entries = MEMORY_CACHE_BYTES / (block_size ? block_size : 1);
    if (entries < 4) entries = 4;
    return entries > MEMORY_CACHE_MAX_ENTRIES ? MEMORY_CACHE_MAX_ENTRIES : (unsigned)entries;
}

// The cached block, or NULL.
static struct memory_block *memory_find(uint64_t inode, uint64_t block, uint64_t block_size) {
    unsigned entries = memory_entries(block_size);
    for (unsigned i = 0; i < entries; i++) {
        struct memory_block *entry = &memory_cache[i];
        if (entry->used != 0 && entry->inode == inode && entry->block == block) {
            entry->used = ++memory_clock;
            return entry;
        }
    }
    return NULL;
}

// The entry to fill: an empty one, else the least recently used; its buffer holds a block.
static struct memory_block *memory_slot(uint64_t block_size) {
    unsigned entries = memory_entries(block_size);
    struct memory_block *oldest = &memory_cache[0];
    for (unsigned i = 0; i < entries; i++) {
        struct memory_block *entry = &memory_cache[i];
        if (entry->used == 0) {
            oldest = entry;
            break;
        }
        if (entry->used < oldest->used) oldest = entry;
    }
    oldest->used = 0;
    if (oldest->data == NULL) oldest->data = malloc(block_size);
    return oldest->data == NULL ? NULL : oldest;
}

// One block of a file, decompressed: from memory, else from the node-local cache when there is
// one, else through libsquashfuse (and then stored in the node-local cache: written under a
// temporary name and renamed, so that readers only ever see whole blocks). The block's bytes, or
// NULL on a read error (or no memory).
static const char *read_block(sqfs_ll_i *lli, uint64_t block, uint64_t length) {
    uint64_t inode = (uint64_t)lli->inode.base.inode_number;
    uint64_t block_size = lli->ll->fs.sb.block_size;
    struct memory_block *entry = memory_find(inode, block, block_size);
    if (entry != NULL && entry->length == length) return entry->data;
    if (entry == NULL) entry = memory_slot(block_size);
    if (entry == NULL) return NULL;
    entry->used = 0;
    char *out = entry->data;
    char name[4200];
    int cached = 0;
    if (cache_dir[0] != '\0') {
        snprintf(name, sizeof(name), "%s/%llu-%llu", cache_dir, (unsigned long long)inode, (unsigned long long)block);
        int fd = open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            struct stat st;
            ssize_t got = -1;
            if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == length) {
                got = pread(fd, out, length, 0);
            }
            close(fd);
            cached = got == (ssize_t)length;
        }
    }
    if (!cached) {
        sqfs_off_t count = (sqfs_off_t)length;
        if (lib.sqfs_read_range(&lli->ll->fs, &lli->inode, (sqfs_off_t)(block * block_size), &count, out) ||
            (uint64_t)count != length) {
            return NULL;
        }
        if (cache_dir[0] != '\0' && cache_written + length <= cache_limit) {
            char temporary[4300];
            snprintf(temporary, sizeof(temporary), "%s.%d.tmp", name, (int)getpid());
            int fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd >= 0) {
                ssize_t put = write(fd, out, length);
                close(fd);
                if (put == (ssize_t)length && rename(temporary, name) == 0) {
                    cache_written += length;
                } else {
                    unlink(temporary);
                }
            }
        }
    }
    entry->inode = inode;
    entry->block = block;
    entry->length = length;
    entry->used = ++memory_clock;
    return out;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)fi;
    sqfs_ll_i lli;
    if (lib.sqfs_ll_iget(req, &lli, ino)) return;
    if (!S_ISREG(lli.inode.base.mode)) {
        lib.fuse_reply_err(req, EISDIR);
        return;
    }
    uint64_t file_size = (uint64_t)lli.inode.xtra.reg.file_size;
    uint64_t start = (uint64_t)offset;
    if (start >= file_size || size == 0) {
        lib.fuse_reply_buf(req, NULL, 0);
        return;
    }
    uint64_t end = start + size < file_size ? start + size : file_size;
    char *buffer = malloc(end - start);
    if (buffer == NULL) {
        lib.fuse_reply_err(req, ENOMEM);
        return;
    }
    // Whole blocks, then the requested part of them.
    uint64_t block_size = lli.ll->fs.sb.block_size;
    int failed = 0;
    for (uint64_t block = start / block_size; block * block_size < end; block++) {
        uint64_t block_start = block * block_size;
        uint64_t length = file_size - block_start < block_size ? file_size - block_start : block_size;
        const char *block_data = read_block(&lli, block, length);
        if (block_data == NULL) {
            failed = 1;
            break;
        }
        uint64_t from = start > block_start ? start : block_start;
        uint64_t to = end < block_start + length ? end : block_start + length;
        memcpy(buffer + (from - start), block_data + (from - block_start), to - from);
    }
    if (failed) {
        lib.fuse_reply_err(req, EIO);
    } else {
        lib.fuse_reply_buf(req, buffer, end - start);
    }
    free(buffer);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)fi;
    sqfs_ll_i lli;
    if (lib.sqfs_ll_iget(req, &lli, ino)) return;
    if (!S_ISDIR(lli.inode.base.mode)) {
        lib.fuse_reply_err(req, ENOTDIR);
        return;
    }
    sqfs_dir dir;
    if (lib.sqfs_dir_open(&lli.ll->fs, &lli.inode, &dir, offset)) {
        lib.fuse_reply_err(req, EINVAL);
        return;
    }
    char *buffer = malloc(size);
    if (buffer == NULL) {
        lib.fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    sqfs_name name;
    sqfs_dir_entry entry;
    sqfs_err error = SQFS_OK;
    struct stat st;
    memset(&st, 0, sizeof(st));
    lib.sqfs_dentry_init(&entry, name);
    while (lib.sqfs_dir_next(&lli.ll->fs, &dir, &entry, &error)) {
        st.st_ino = lli.ll->ino_fuse_num(lli.ll, &entry);
        st.st_mode = lib.sqfs_dentry_mode(&entry);
        size_t needed = lib.fuse_add_direntry(req, buffer + used, size - used, lib.sqfs_dentry_name(&entry), &st,
                                          (off_t)lib.sqfs_dentry_next_offset(&entry));
        if (needed > size - used) break;
        used += needed;
    }
    if (error) {
        lib.fuse_reply_err(req, EIO);
    } else {
        lib.fuse_reply_buf(req, buffer, used);
    }
    free(buffer);
}

// Moves `fd` to `target` (which must be free or equal to fd).
static int move_fd(int fd, int target) {
    if (fd == target) return fd;
    if (dup2(fd, target) < 0) return -1;
    close(fd);
    return target;
}

static double now_us(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec * 1e6 + (double)time.tv_nsec / 1e3;
}

// The request loop. Requests come in bursts (an exec faults in a binary, a program opens its
// libraries), and on virtual machines waking a sleeping server costs more than the request
// itself: after each request the server keeps reading without sleeping for a short while, and
// sleeps in poll(2) only when nothing came.
static void serve_requests(struct fuse_session *session, int fuse_fd) {
    const double spin_us = 300;
    int flags = fcntl(fuse_fd, F_GETFL);
    fcntl(fuse_fd, F_SETFL, flags | O_NONBLOCK);
    struct fuse_buf buffer;
    memset(&buffer, 0, sizeof(buffer));
    double spin_until = now_us() + spin_us;
    while (!lib.fuse_session_exited(session)) {
        int got = lib.fuse_session_receive_buf(session, &buffer);
        if (got == -EAGAIN) {
            if (now_us() < spin_until) continue;
            struct pollfd waiting = {.fd = fuse_fd, .events = POLLIN};
            if (poll(&waiting, 1, -1) < 0 && errno != EINTR) break;
            spin_until = now_us() + spin_us;
            continue;
        }
        if (got == -EINTR) continue;
        if (got <= 0) break;  // 0 or -ENODEV: unmounted
        lib.fuse_session_process_buf(session, &buffer);
        spin_until = now_us() + spin_us;
    }
    free(buffer.mem);
}

// A one-byte message with room for one descriptor (SCM_RIGHTS), as the channel carries.
struct fd_message {
    char byte;
    struct iovec vector;
    struct msghdr message;
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
};

static void fd_message_init(struct fd_message *m, char byte) {
    memset(m, 0, sizeof(*m));
    m->byte = byte;
    m->vector.iov_base = &m->byte;
    m->vector.iov_len = 1;
    m->message.msg_iov = &m->vector;
    m->message.msg_iovlen = 1;
    m->message.msg_control = m->control.space;
    m->message.msg_controllen = sizeof(m->control.space);
}

// Receives one descriptor over a Unix socket; -1 when the peer closed it without sending.
static int receive_fd(int socket_fd) {
    struct fd_message m;
    fd_message_init(&m, 0);
    struct msghdr message = m.message;
    ssize_t got;
    do {
        got = recvmsg(socket_fd, &message, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got != 1) return -1;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    if (header == NULL || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(header), sizeof(int));
    return fd;
}

// The grandchild: opens the image, reports, waits for the mounted /dev/fuse descriptor, serves
// until unmounted. Never returns.
static void serve(const char *image, int status_fd, int channel_fd) {
    int error = 0;
    tbx_set_process_name("ns-enter-fuse");
    // Descriptors: first moved above any collision (stdio may have been closed, so the pipe and
    // socket may sit on 0-2) to 5 or higher (not further: a low limit of open files, ulimit -n,
    // must not stop the server), then 3 = status, 4 = channel, 0-2 on /dev/null; nothing else.
    int high_status = fcntl(status_fd, F_DUPFD_CLOEXEC, 5);
    int high_channel = fcntl(channel_fd, F_DUPFD_CLOEXEC, 5);
    int null_fd = open("/dev/null", O_RDWR);
    if (high_status < 0 || high_channel < 0 || null_fd < 0) _exit(127);
    if (dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0) _exit(127);
    status_fd = move_fd(high_status, 3);
    channel_fd = move_fd(high_channel, 4);
    if (status_fd < 0 || channel_fd < 0) _exit(127);
    close_range(5, ~0U, 0);

    pid_t self = getpid();
    sqfs_ll *ll = NULL;
    struct fuse_session *session = NULL;
    error = load_libraries();
    if (error == 0 && (ll = lib.sqfs_ll_open(image, 0)) == NULL) error = EINVAL;
    if (error == 0) {
        struct fuse_lowlevel_ops ops;
        memset(&ops, 0, sizeof(ops));
        ops.getattr = op_getattr;
        ops.lookup = op_lookup;
        ops.opendir = op_open;
        ops.readdir = op_readdir;
        ops.open = op_open;
        ops.create = lib.sqfs_ll_op_create;
        ops.read = op_read;
        ops.readlink = lib.sqfs_ll_op_readlink;
        ops.listxattr = lib.sqfs_ll_op_listxattr;
        ops.getxattr = lib.sqfs_ll_op_getxattr;
        ops.forget = lib.sqfs_ll_op_forget;
        ops.statfs = lib.stfs_ll_op_statfs;
        char *argv[] = {"ns-enter-fuse", NULL};
        struct fuse_args args = FUSE_ARGS_INIT(1, argv);
        session = lib.fuse_session_new(&args, &ops, sizeof(ops), ll);
        if (session == NULL) error = EIO;
    }
    int32_t message[2] = {(int32_t)self, error};
    if (write(status_fd, message, sizeof(message)) != (ssize_t)sizeof(message) || error != 0) _exit(1);
    close(status_fd);
    // The /dev/fuse descriptor arrives once the caller has mounted it (it must be opened inside
    // the caller's user namespace); nothing arrives when the caller gave up.
    int fuse_fd = receive_fd(channel_fd);
    close(channel_fd);
    if (fuse_fd < 0) _exit(0);
    fcntl(fuse_fd, F_SETFD, 0);
    // "/dev/fd/N": libfuse takes the open descriptor and mounts nothing itself.
    char mountpoint[32];
    snprintf(mountpoint, sizeof(mountpoint), "/dev/fd/%d", fuse_fd);
    if (lib.fuse_session_mount(session, mountpoint) != 0) _exit(1);
    serve_requests(session, fuse_fd);
    _exit(0);
}

int tbx_fuse_server_start(const char *image, uint32_t uid, uint32_t gid, int *status, int *channel, pid_t *helper) {
    owner_uid = (uid_t)uid;
    owner_gid = (gid_t)gid;
    int status_pipe[2], sockets[2];
    if (pipe2(status_pipe, O_CLOEXEC) != 0) return -errno;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
        int error = errno;
        close(status_pipe[0]);
        close(status_pipe[1]);
        return -error;
    }
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(status_pipe[0]);
        close(status_pipe[1]);
        close(sockets[0]);
        close(sockets[1]);
        return -error;
    }
    if (child == 0) {
        // The middle process: a new session, then the server, then exit so that the server is
        // nobody's child here (a shell that waits for its children must not wait for it).
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        setsid();
        signal(SIGHUP, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        close(status_pipe[0]);
        close(sockets[0]);
        pid_t server = fork();
        if (server == 0) serve(image, status_pipe[1], sockets[1]);
        if (server < 0) {
            int32_t message[2] = {0, errno};
            ssize_t ignored = write(status_pipe[1], message, sizeof(message));
            (void)ignored;
        }
        _exit(0);
    }
    close(status_pipe[1]);
    close(sockets[1]);
    // The middle process is reaped in tbx_fuse_server_ready, when it has long exited.
    *helper = child;
    *status = status_pipe[0];
    *channel = sockets[0];
    return 0;
}

void tbx_fuse_server_set_cache(const char *directory, uint64_t limit) {
    if (directory == NULL || strlen(directory) >= sizeof(cache_dir)) {
        cache_dir[0] = '\0';
        return;
    }
    strcpy(cache_dir, directory);
    cache_limit = limit;
}

pid_t tbx_fuse_server_ready(int status, pid_t helper) {
    int wait_status;
    while (waitpid(helper, &wait_status, 0) < 0 && errno == EINTR) {}
    int32_t message[2] = {0, EIO};
    ssize_t got;
    do {
        got = read(status, message, sizeof(message));
    } while (got < 0 && errno == EINTR);
    close(status);
    if (got != (ssize_t)sizeof(message) || message[1] != 0 || message[0] <= 0) {
        return -(message[1] != 0 ? message[1] : EIO);
    }
    return (pid_t)message[0];
}

int tbx_fuse_server_go(int channel, int fuse_fd) {
    struct fd_message m;
    fd_message_init(&m, 1);
    struct msghdr message = m.message;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fuse_fd, sizeof(int));
    ssize_t sent;
    do {
        sent = sendmsg(channel, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    int error = sent == 1 ? 0 : errno;
    close(channel);
    return error == 0 ? 0 : -error;
}
