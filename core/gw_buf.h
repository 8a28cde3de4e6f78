/*
 * Fixed-size I/O buffers recycled through a per-worker free list, so a busy
 * worker in steady state does not call malloc per request, and an idle
 * keep-alive connection holds none.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include "gw_core.h"

typedef struct gw_buf_s gw_buf_t;

struct gw_buf_s {
    gw_buf_t *next; /* free-list link */
    size_t start;   /* first unconsumed byte */
    size_t end;     /* one past the last byte */
    size_t cap;
    char data[];
};

typedef struct {
    gw_buf_t *free;
    size_t nfree;
    size_t max_free; /* buffers kept on the list beyond this are freed */
    size_t size;     /* capacity of each buffer */
} gw_buf_pool_t;

void gw_buf_pool_init(gw_buf_pool_t *pool, size_t size, size_t max_free);
void gw_buf_pool_destroy(gw_buf_pool_t *pool);

/* An empty buffer (start == end == 0) of pool->size bytes. Never NULL. */
gw_buf_t *gw_buf_get(gw_buf_pool_t *pool);

/* Return b (may be NULL) to the pool. */
void gw_buf_put(gw_buf_pool_t *pool, gw_buf_t *b);

static inline size_t gw_buf_len(const gw_buf_t *b)
{
    return b->end - b->start;
}

static inline size_t gw_buf_room(const gw_buf_t *b)
{
    return b->cap - b->end;
}

#endif
