// libsquashfuse and fuse3, through pkg-config "squashfuse_ll fuse3" (Debian: libsquashfuse-dev,
// libfuse3-dev). This module only carries the include and link flags: squashfuse's headers clash
// with Glibc's module when imported into Swift (struct stat redefinitions through its config.h),
// so they are included only by CToolboxShim's C files, which expose a small tbx_sqfs_* API.
