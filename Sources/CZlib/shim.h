// zlib, through pkg-config "zlib" (Debian: zlib1g-dev). inflateInit2/deflateInit2 are macros:
// Swift calls them through CToolboxShim's tbx_inflate_init2/tbx_deflate_init2.
#include <zlib.h>
