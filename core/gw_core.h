/*
 * Moongate core definitions shared by every layer: return codes, string
 * slices and small helpers. Knows nothing of HTTP, config or the event loop.
 */
#ifndef GW_CORE_H
#define GW_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* One small set of return codes, used by every layer. */
#define GW_OK       0
#define GW_ERROR    (-1)
#define GW_AGAIN    (-2)
#define GW_DONE     (-3)
#define GW_DECLINED (-4)

#define GW_VERSION "0.1.0"

/* A view into memory owned by somebody else; never NUL-terminated. */
typedef struct {
    const char *p;
    size_t len;
} gw_str_t;

#define GW_STR(lit) ((gw_str_t){(lit), sizeof(lit) - 1})

static inline bool gw_str_eq(gw_str_t a, gw_str_t b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static inline char gw_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
}

/* ASCII case-insensitive comparison of two slices. */
static inline bool gw_str_caseeq(gw_str_t a, gw_str_t b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (gw_lower(a.p[i]) != gw_lower(b.p[i]))
            return false;
    return true;
}

/* Case-insensitive comparison of a slice with a lower-case C string. */
static inline bool gw_str_caseeq_lit(gw_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (gw_lower(a.p[i]) != lit[i])
            return false;
    return true;
}

#define GW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic clock in seconds. */
double gw_now(void);

/* Wall clock in seconds since the epoch. */
double gw_wall_now(void);

/* Allocation that aborts the process when memory is exhausted. */
void *gw_xmalloc(size_t n);
void *gw_xcalloc(size_t n, size_t size);
void *gw_xrealloc(void *p, size_t n);
char *gw_xstrdup(const char *s);
char *gw_xstrndup(const char *s, size_t n);

#endif
