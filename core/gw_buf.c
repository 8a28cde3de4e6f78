/* The buffer pool declared in gw_buf.h. */
#include "gw_buf.h"

#include <stdlib.h>

void gw_buf_pool_init(gw_buf_pool_t *pool, size_t size, size_t max_free)
{
    pool->free = NULL;
    pool->nfree = 0;
    pool->max_free = max_free;
    pool->size = size;
}

void gw_buf_pool_destroy(gw_buf_pool_t *pool)
{
    while (pool->free) {
        gw_buf_t *b = pool->free;
        pool->free = b->next;
        free(b);
    }
    pool->nfree = 0;
}

gw_buf_t *gw_buf_get(gw_buf_pool_t *pool)
{
    gw_buf_t *b = pool->free;
    if (b) {
        pool->free = b->next;
        pool->nfree--;
    } else {
        b = gw_xmalloc(sizeof(*b) + pool->size);
        b->cap = pool->size;
    }
    b->next = NULL;
    b->start = b->end = 0;
    return b;
}

void gw_buf_put(gw_buf_pool_t *pool, gw_buf_t *b)
{
    if (!b)
        return;
    if (pool->nfree >= pool->max_free || b->cap != pool->size) {
        free(b);
        return;
    }
    b->next = pool->free;
    pool->free = b;
    pool->nfree++;
}
