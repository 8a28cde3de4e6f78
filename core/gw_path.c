/* Request-target handling declared in gw_path.h. */
#include "gw_path.h"

/* The value of one hex digit, or -1. */
static int gw_path_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The output of gw_path_normalize while it is being written. */
typedef struct {
    char *out;
    size_t len; /* bytes written; out[0] is always '/' */
    size_t seg; /* start of the current segment, just after a '/' */
} gw_path_norm_t;

/*
 * Resolve the segment out[seg..len) when it is "." or "..": "." is dropped,
 * ".." is dropped with the segment before it; both leave the output ending
 * in '/'. Returns -1 when ".." would climb above the root.
 */
static int gw_path_dots(gw_path_norm_t *n)
{
    const char *s = n->out + n->seg;
    size_t slen = n->len - n->seg;

    if (slen == 1 && s[0] == '.') {
        n->len = n->seg;
    } else if (slen == 2 && s[0] == '.' && s[1] == '.') {
        if (n->seg == 1)
            return -1;
        size_t i = n->seg - 1; /* the '/' before ".." */
        while (i > 0 && n->out[i - 1] != '/')
            i--;
        n->len = n->seg = i;
    }
    return 0;
}

/*
 * Single pass: each input byte is decoded first, so escaped slashes and dots
 * take part in segment handling like literal ones. The output is
 * NUL-terminated; it never grows longer than the input.
 */
ssize_t gw_path_normalize(gw_str_t raw, char *out, size_t outsize)
{
    if (raw.len == 0 || raw.p[0] != '/' || outsize < 2)
        return -1;

    gw_path_norm_t n = {out, 1, 1};
    out[0] = '/';

    size_t i = 1;
    while (i < raw.len) {
        unsigned char c = (unsigned char)raw.p[i++];
        if (c == '%') {
            if (raw.len - i < 2)
                return -1;
            int hi = gw_path_hex((unsigned char)raw.p[i]);
            int lo = gw_path_hex((unsigned char)raw.p[i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return -1;

        if (c == '/') {
            if (gw_path_dots(&n) < 0)
                return -1;
            if (out[n.len - 1] == '/')
                continue; /* repeated slash, or a resolved dot segment */
        }
        if (n.len + 1 >= outsize)
            return -1;
        out[n.len++] = (char)c;
        if (c == '/')
            n.seg = n.len;
    }
    if (gw_path_dots(&n) < 0)
        return -1;
    out[n.len] = '\0';
    return (ssize_t)n.len;
}

/* True for the bytes a path keeps literally: RFC 3986 pchar and '/'. */
static bool gw_path_literal(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '-':
    case '.':
    case '_':
    case '~': /* unreserved */
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')': /* sub-delims */
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
    case ':':
    case '@':
    case '/':
        return true;
    default:
        return false;
    }
}

/* The output is not NUL-terminated. */
ssize_t gw_path_encode(gw_str_t path, char *out, size_t outsize)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < path.len; i++) {
        unsigned char c = (unsigned char)path.p[i];
        if (gw_path_literal(c)) {
            if (o + 1 > outsize)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 > outsize)
                return -1;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0x0f];
        }
    }
    return (ssize_t)o;
}

/* Without a '?', query is {NULL, 0}; "/a?" gives a non-NULL empty query. */
void gw_path_split(gw_str_t target, gw_str_t *path, gw_str_t *query)
{
    const char *q = target.len ? memchr(target.p, '?', target.len) : NULL;

    if (!q) {
        *path = target;
        query->p = NULL;
        query->len = 0;
        return;
    }
    path->p = target.p;
    path->len = (size_t)(q - target.p);
    query->p = q + 1;
    query->len = target.len - path->len - 1;
}
