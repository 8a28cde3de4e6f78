/* HTTP grammar helpers declared in gw_http.h. */
#include "gw_http.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const unsigned char gw_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,  ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,  ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1,
    ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,  ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,  ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

bool gw_http_is_token(gw_str_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!gw_tchar[(unsigned char)s.p[i]])
            return false;
    return true;
}

/* Whether one byte is allowed in a field value: not a control character
 * other than HTAB. */
static inline bool gw_http_value_byte(unsigned char ch)
{
    return (ch >= 0x20 || ch == '\t') && ch != 0x7f;
}

/*
 * Eight bytes at a time: a word with no byte below 0x20 and none equal to
 * 0x7f is fine as it is (the usual case); only a word with a tab or a bad
 * byte is looked at byte by byte.
 */
bool gw_http_valid_value(gw_str_t s)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = 0;
    for (; i + 8 <= s.len; i += 8) {
        uint64_t x;
        memcpy(&x, s.p + i, 8);
        uint64_t del = x ^ (ones * 0x7f);
        uint64_t suspect = ((x - ones * 0x20) & ~x) | ((del - ones) & ~del);
        if (suspect & highs)
            for (size_t k = i; k < i + 8; k++)
                if (!gw_http_value_byte((unsigned char)s.p[k]))
                    return false;
    }
    for (; i < s.len; i++)
        if (!gw_http_value_byte((unsigned char)s.p[i]))
            return false;
    return true;
}

gw_str_t gw_http_trim(gw_str_t s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

bool gw_http_valid_host(gw_str_t s)
{
    size_t i = 0;
    if (s.len && s.p[0] == '[') {
        while (i < s.len && s.p[i] != ']') {
            char ch = s.p[i];
            if (i > 0 && !(ch == ':' || ch == '.' || (ch >= '0' && ch <= '9') ||
                           (gw_lower(ch) >= 'a' && gw_lower(ch) <= 'f')))
                return false;
            i++;
        }
        if (i == s.len)
            return false;
        i++;
    } else {
        for (; i < s.len && s.p[i] != ':'; i++) {
            char ch = s.p[i];
            if (!((ch >= '0' && ch <= '9') || (gw_lower(ch) >= 'a' && gw_lower(ch) <= 'z') ||
                  ch == '-' || ch == '.' || ch == '_'))
                return false;
        }
    }
    if (i == s.len)
        return true;
    if (s.p[i] != ':' || i + 1 == s.len || s.len - i - 1 > 5)
        return false;
    for (i++; i < s.len; i++)
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
    return true;
}

gw_str_t gw_http_host_without_port(gw_str_t host)
{
    if (host.len == 0)
        return host; /* an HTTP/1.0 request without a host: p may be NULL */
    if (host.p[0] == '[') {
        const char *end = memchr(host.p, ']', host.len);
        if (end)
            host.len = (size_t)(end - host.p) + 1;
        return host;
    }
    const char *colon = memchr(host.p, ':', host.len);
    if (colon)
        host.len = (size_t)(colon - host.p);
    return host;
}

int gw_http_absolute_target(gw_str_t target, gw_str_t *authority, gw_str_t *origin)
{
    size_t skip;
    if (target.len >= 7 && gw_str_caseeq_lit((gw_str_t){target.p, 7}, "http://"))
        skip = 7;
    else if (target.len >= 8 && gw_str_caseeq_lit((gw_str_t){target.p, 8}, "https://"))
        skip = 8;
    else
        return GW_ERROR;
    const char *a = target.p + skip;
    size_t rest = target.len - skip, alen = 0;
    while (alen < rest && a[alen] != '/' && a[alen] != '?')
        alen++;
    if (alen == 0)
        return GW_ERROR;
    *authority = (gw_str_t){a, alen};
    if (alen == rest)
        *origin = GW_STR("/");
    else if (a[alen] == '?')
        return GW_ERROR;
    else
        *origin = (gw_str_t){a + alen, rest - alen};
    return GW_OK;
}

bool gw_http_is_hop_by_hop(gw_str_t n)
{
    switch (n.len) {
    case 2:
        return gw_str_caseeq_lit(n, "te");
    case 7:
        return gw_str_caseeq_lit(n, "trailer") || gw_str_caseeq_lit(n, "upgrade");
    case 10:
        return gw_str_caseeq_lit(n, "connection") || gw_str_caseeq_lit(n, "keep-alive");
    case 16:
        return gw_str_caseeq_lit(n, "proxy-connection");
    default:
        return false;
    }
}

bool gw_http_connection_lists(gw_str_t conn, gw_str_t name)
{
    size_t i = 0;
    while (i < conn.len) {
        while (i < conn.len && (conn.p[i] == ',' || conn.p[i] == ' ' || conn.p[i] == '\t'))
            i++;
        size_t start = i;
        while (i < conn.len && conn.p[i] != ',')
            i++;
        gw_str_t tok = gw_http_trim((gw_str_t){conn.p + start, i - start});
        if (tok.len && gw_str_caseeq(tok, name))
            return true;
    }
    return false;
}

const char *gw_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 423:
        return "Locked";
    case 424:
        return "Failed Dependency";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

size_t gw_http_error_response(char *buf, size_t size, int status, const char *message,
                              const char *request_id, bool close, bool head_only)
{
    char body[512];
    int blen =
        snprintf(body, sizeof body, "{\"status\":%d,\"error\":\"%s\",\"request_id\":\"%s\"}\n",
                 status, message, request_id);
    if (blen < 0 || (size_t)blen >= sizeof body)
        blen = 0;
    int n = snprintf(buf, size,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: moongate\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n"
                     "X-Request-Id: %s\r\n"
                     "%s"
                     "\r\n"
                     "%s",
                     status, gw_http_reason(status), blen, request_id,
                     close ? "Connection: close\r\n" : "", head_only ? "" : body);
    if (n < 0)
        return 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}
