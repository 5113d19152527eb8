// libzstd, through pkg-config "libzstd" (Debian: libzstd-dev).
#include <zstd.h>
#include <zstd_errors.h>
