/* Clocks and allocation helpers declared in gw_core.h. */
#define _POSIX_C_SOURCE 200809L
#include "gw_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

double gw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double gw_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void gw_oom(size_t n)
{
    fprintf(stderr, "moongate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *gw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        gw_oom(n);
    return p;
}

void *gw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        gw_oom(n * size);
    return p;
}

void *gw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        gw_oom(n);
    return q;
}

char *gw_xstrdup(const char *s)
{
    return gw_xstrndup(s, strlen(s));
}

char *gw_xstrndup(const char *s, size_t n)
{
    char *p = gw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
