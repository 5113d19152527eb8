// CToolboxShim: the project's only C code, for what Swift cannot call directly.
// - libcurl's curl_easy_setopt/curl_easy_getinfo are variadic: typed wrappers.
// - zlib's inflateInit2/deflateInit2 are macros: function wrappers.
// - libsquashfuse's headers cannot be imported into Swift: a small opaque API over them.
#ifndef TBX_SHIM_H
#define TBX_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include <zlib.h>

// MARK: libcurl
CURLcode tbx_curl_easy_setopt_long(CURL *curl, CURLoption option, long value);
CURLcode tbx_curl_easy_setopt_string(CURL *curl, CURLoption option, const char *value);
CURLcode tbx_curl_easy_setopt_pointer(CURL *curl, CURLoption option, void *value);
CURLcode tbx_curl_easy_setopt_write_function(CURL *curl, size_t (*function)(char *, size_t, size_t, void *));
CURLcode tbx_curl_easy_setopt_header_function(CURL *curl, size_t (*function)(char *, size_t, size_t, void *));
CURLcode tbx_curl_easy_getinfo_long(CURL *curl, CURLINFO info, long *value);
CURLcode tbx_curl_easy_getinfo_string(CURL *curl, CURLINFO info, char **value);
CURLcode tbx_curl_easy_getinfo_pointer(CURL *curl, CURLINFO info, void **value);
CURLMcode tbx_curl_multi_setopt_long(CURLM *multi, CURLMoption option, long value);
// The result code of a finished transfer's message (CURLMsg.data is a union).
CURLcode tbx_curl_msg_result(const CURLMsg *message);

// MARK: zlib
int tbx_inflate_init2(z_stream *stream, int window_bits);
int tbx_deflate_init2(z_stream *stream, int level, int window_bits);

// MARK: libsquashfuse (read-only access to a squashfs image file)
typedef struct tbx_sqfs tbx_sqfs;

// Opens a squashfs image; 0 on success, else a libsquashfuse error code (and *out is NULL).
int tbx_sqfs_open(const char *path, tbx_sqfs **out);
void tbx_sqfs_close(tbx_sqfs *fs);
uint32_t tbx_sqfs_inode_count(const tbx_sqfs *fs);
uint32_t tbx_sqfs_block_size(const tbx_sqfs *fs);
uint16_t tbx_sqfs_compression(const tbx_sqfs *fs);

// Looks up an absolute path in the image: 0 and *found set on success; the entry's mode and size.
int tbx_sqfs_lookup(tbx_sqfs *fs, const char *path, int *found, uint32_t *mode, uint64_t *size);

// Reads up to `size` bytes of a regular file at `offset`; returns the count read, or -1.
int64_t tbx_sqfs_read(tbx_sqfs *fs, const char *path, void *buffer, uint64_t offset, uint64_t size);

#endif
