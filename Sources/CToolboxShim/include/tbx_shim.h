// CToolboxShim: the project's only C code, for what Swift cannot call directly.
// - libcurl's curl_easy_setopt/curl_easy_getinfo are variadic: typed wrappers.
// - zlib's inflateInit2/deflateInit2 are macros: function wrappers.
// - libsquashfuse's headers cannot be imported into Swift: a small opaque API over them.
// - ISA-L's inflate state holds large lookup tables: an opaque handle and one step function.
// - sched_getaffinity and CPU_COUNT need _GNU_SOURCE and macros: one function.
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

// MARK: ISA-L (gzip inflate)
typedef struct tbx_inflate tbx_inflate;

// A gzip decoder (header and CRC-32 checked); NULL when out of memory.
tbx_inflate *tbx_inflate_create(void);
// Prepares the decoder for the next member of a multi-member gzip file.
void tbx_inflate_reset(tbx_inflate *inflater);
void tbx_inflate_free(tbx_inflate *inflater);
// Decodes from input into output: ISA-L's status (0 ok, 1 end of input, 2 output full, < 0 an
// error); *finished is set when the member's end (and checked trailer) was reached.
int tbx_inflate_step(tbx_inflate *inflater, const void *input, size_t input_size, void *output, size_t output_size,
                     size_t *consumed, size_t *produced, int *finished);

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

// MARK: CPUs
// The number of CPUs this process may run on (its affinity mask), or -1.
int tbx_usable_cpus(void);

#endif
