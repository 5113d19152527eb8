// Defines libsquashfuse's headers expect before inclusion (Debian's config.h sets them too;
// upstream installs may not ship one).
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 32
#endif
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <squashfuse/squashfuse.h>

#include "tbx_shim.h"

struct tbx_sqfs {
    sqfs fs;
};

int tbx_sqfs_open(const char *path, tbx_sqfs **out) {
    *out = NULL;
    tbx_sqfs *handle = calloc(1, sizeof(*handle));
    if (handle == NULL) return SQFS_ERR;
    sqfs_err err = sqfs_open_image(&handle->fs, path, 0);
    if (err != SQFS_OK) {
        free(handle);
        return err;
    }
    *out = handle;
    return 0;
}

void tbx_sqfs_close(tbx_sqfs *handle) {
    if (handle == NULL) return;
    sqfs_destroy(&handle->fs);
    free(handle);
}

uint32_t tbx_sqfs_inode_count(const tbx_sqfs *handle) { return handle->fs.sb.inodes; }
uint32_t tbx_sqfs_block_size(const tbx_sqfs *handle) { return handle->fs.sb.block_size; }
uint16_t tbx_sqfs_compression(const tbx_sqfs *handle) { return handle->fs.sb.compression; }

static sqfs_err lookup(tbx_sqfs *handle, const char *path, sqfs_inode *inode, bool *found) {
    sqfs_err err = sqfs_inode_get(&handle->fs, inode, sqfs_inode_root(&handle->fs));
    if (err != SQFS_OK) return err;
    return sqfs_lookup_path(&handle->fs, inode, path, found);
}

int tbx_sqfs_lookup(tbx_sqfs *handle, const char *path, int *found, uint32_t *mode, uint64_t *size) {
    sqfs_inode inode;
    bool exists = false;
    sqfs_err err = lookup(handle, path, &inode, &exists);
    if (err != SQFS_OK) return err;
    *found = exists;
    if (exists) {
        *mode = inode.base.mode;
        *size = S_ISREG(inode.base.mode) ? (uint64_t)inode.xtra.reg.file_size : 0;
    }
    return 0;
}

int64_t tbx_sqfs_read(tbx_sqfs *handle, const char *path, void *buffer, uint64_t offset, uint64_t size) {
    sqfs_inode inode;
    bool exists = false;
    if (lookup(handle, path, &inode, &exists) != SQFS_OK || !exists || !S_ISREG(inode.base.mode)) return -1;
    sqfs_off_t count = (sqfs_off_t)size;
    if (sqfs_read_range(&handle->fs, &inode, (sqfs_off_t)offset, &count, buffer) != SQFS_OK) return -1;
    return (int64_t)count;
}
