// libcurl, through pkg-config "libcurl" (Debian: libcurl4-openssl-dev). curl_easy_setopt and
// curl_easy_getinfo are variadic: Swift calls them through CToolboxShim's typed wrappers.
#include <curl/curl.h>
