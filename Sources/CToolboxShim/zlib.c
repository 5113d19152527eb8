#include "tbx_shim.h"

int tbx_inflate_init2(z_stream *stream, int window_bits) {
    return inflateInit2(stream, window_bits);
}

int tbx_deflate_init2(z_stream *stream, int level, int window_bits) {
    return deflateInit2(stream, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
}
