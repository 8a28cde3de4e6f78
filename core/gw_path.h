/*
 * Request-target handling: split path and query, normalise the path for
 * routing (percent-decoding, dot segments, repeated slashes), and encode a
 * normalised path again for sending upstream.
 */
#ifndef GW_PATH_H
#define GW_PATH_H

#include "gw_core.h"

#include <sys/types.h>

/*
 * Normalise the path part of a request target (`raw`, without the query)
 * into out (capacity outsize, at least raw.len + 1 is always enough).
 * Percent-escapes are decoded, "//" collapses, "." and ".." segments are
 * resolved. Returns the normalised length, or -1 when the path is invalid:
 * not starting with '/', a bad or NUL escape ("%zz", "%00"), a control
 * character, or ".." climbing above the root.
 */
ssize_t gw_path_normalize(gw_str_t raw, char *out, size_t outsize);

/*
 * Percent-encode a normalised path for sending upstream: bytes outside
 * RFC 3986 pchar and '/' are escaped. Returns the length written, or -1 when
 * outsize is too small (3 * len is always enough).
 */
ssize_t gw_path_encode(gw_str_t path, char *out, size_t outsize);

/* Split a request target at the first '?'; query excludes the '?'. */
void gw_path_split(gw_str_t target, gw_str_t *path, gw_str_t *query);

#endif
