/*
 * Named dictionaries in shared memory, declared in gw_shdict.h.
 *
 * One dict is one MAP_SHARED | MAP_ANONYMOUS region, mapped by the master
 * before it forks:
 *
 *     [header][buckets][heap]
 *
 * Every link inside the region is an offset from its start, 0 meaning
 * "none" (the header is at offset 0, so no block can be). Nothing in the
 * region depends on where a process maps it.
 *
 * Heap: a buddy allocator. A block of order k is 64 << k bytes and starts at
 * a multiple of its size, counted from the heap's start. Each block starts
 * with a gw_shd_entry_t whose `order` and `state` are always valid. A free
 * block is on the doubly linked free list of its order (bit k of `avail`
 * says the list is not empty, so finding a block is one ctz). Allocation
 * splits a larger block in halves down to the order wanted; freeing merges
 * a block with its buddy (the other half of the aligned block twice its
 * size) while that buddy is free and whole. A heap that is not a power of
 * two is carved into its binary decomposition (3 MiB: 2 MiB + 1 MiB); a
 * buddy reaching past the heap's end does not exist, so those blocks never
 * merge. An empty heap is always back to that carving, which is why an
 * entry up to the largest block always fits once enough entries are gone.
 * The cost: up to half a block unused (a quarter on average).
 *
 * Entries: a used block is one entry: header, key, then the value's bytes
 * for a string. It is on its bucket's chain (singly linked, newest first)
 * and on the LRU list (doubly linked, head = most recently used). Buckets
 * are chosen by a SipHash-1-3 of the key with a random per-dict seed, so
 * keys taken from requests cannot be made to collide on purpose.
 *
 * Expiry: `expires` is an absolute CLOCK_MONOTONIC time, the same clock in
 * every process of the machine. An expired entry is removed when a lookup
 * meets it, and when room is needed: before evicting a live entry from the
 * LRU tail, the last GW_SHD_EXPIRE_SCAN entries are checked for expired
 * ones, which are freed first and not counted as evictions.
 *
 * Locking: one process-shared, robust pthread mutex per dict. Changes to
 * the structure happen between gw_shd_begin and gw_shd_end, which raise and
 * clear `dirty`. A process that locks and gets EOWNERDEAD knows the owner
 * died holding the lock: if `dirty` is set the structure may be half
 * updated, and the dict is flushed (rebuilt from the header's sizes only);
 * otherwise it is intact and kept. Either way a warning is logged. A
 * process killed while recovering leaves `dirty` set, so the next one
 * recovers again.
 */
#include "gw_shdict.h"
#include "gw_log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define GW_SHD_MIN_SHIFT   6   /* the smallest block: 64 bytes */
#define GW_SHD_ORDERS      48  /* blocks of 64 B up to 8 PiB */
#define GW_SHD_BUCKET_HEAP 256 /* one hash bucket per this many heap bytes */
#define GW_SHD_MAX_BUCKETS (UINT64_C(1) << 31)
#define GW_SHD_EXPIRE_SCAN 8 /* LRU tail entries checked for expiry before evicting */

enum { GW_SHD_FREE = 1, GW_SHD_USED = 2 };

/* The start of every block; for a used block, the entry's header. */
typedef struct {
    uint8_t order; /* the block is 64 << order bytes */
    uint8_t state; /* GW_SHD_FREE or GW_SHD_USED */
    uint8_t type;  /* GW_SHDICT_STRING, _NUMBER or _BOOLEAN */
    uint8_t unused;
    uint32_t hash;  /* low half of the key's hash; the bucket is hash & mask */
    uint64_t hnext; /* next entry on the bucket's chain */
    uint64_t prev;  /* used: LRU neighbours; free: free-list neighbours */
    uint64_t next;
    double expires; /* CLOCK_MONOTONIC seconds; 0: never */
    union {
        double num;    /* number; boolean as 0 or 1 */
        uint64_t slen; /* string length */
    } v;
    uint32_t klen;
    uint32_t unused2;
} gw_shd_entry_t;

_Static_assert(sizeof(gw_shd_entry_t) == 56, "the entry header is documented as 56 bytes");

/* The start of the region. Sizes and offsets are fixed at creation. */
typedef struct {
    pthread_mutex_t lock;
    _Atomic uint32_t dirty; /* set while the structure is being changed */
    uint32_t max_order;     /* order of the largest block of an empty heap */
    uint64_t seed[2];
    uint64_t nbuckets; /* a power of two */
    uint64_t buckets_off;
    uint64_t heap_off;
    uint64_t heap_size; /* a multiple of 64 */
    uint64_t count;
    uint64_t free_bytes;
    uint64_t lru_head;
    uint64_t lru_tail;
    uint64_t avail; /* bit k set: free_head[k] is not empty */
    uint64_t free_head[GW_SHD_ORDERS];
} gw_shd_hdr_t;

struct gw_shdict_s {
    gw_shd_hdr_t *hdr; /* the start of the mapping */
    size_t map_size;
    char *name;
    gw_shdict_t *next; /* the registry */
    bool registered;
};

/* A key with its hash, computed before locking. */
typedef struct {
    const char *p;
    size_t len;
    uint64_t hash;
} gw_shd_key_t;

/* A value to store. */
typedef struct {
    int type;
    double num;
    const char *str;
    size_t slen;
    double expires;
} gw_shd_val_t;

static gw_shdict_t *gw_shd_registry;

/* ---- addressing ---- */

static inline gw_shd_entry_t *gw_shd_at(gw_shdict_t *d, uint64_t off)
{
    return (gw_shd_entry_t *)((char *)d->hdr + off);
}

static inline uint64_t *gw_shd_buckets(gw_shdict_t *d)
{
    return (uint64_t *)((char *)d->hdr + d->hdr->buckets_off);
}

static inline char *gw_shd_key_of(gw_shd_entry_t *e)
{
    return (char *)(e + 1);
}

static inline uint64_t gw_shd_block_size(unsigned order)
{
    return UINT64_C(1) << (order + GW_SHD_MIN_SHIFT);
}

static inline bool gw_shd_expired(const gw_shd_entry_t *e, double now)
{
    return e->expires != 0 && e->expires <= now;
}

/* ---- SipHash-1-3 ---- */

static inline uint64_t gw_shd_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline void gw_shd_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = gw_shd_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = gw_shd_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = gw_shd_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = gw_shd_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = gw_shd_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = gw_shd_rotl(v[2], 32);
}

/* SipHash-1-3 of p[0..n) under the 128-bit key `seed`. */
static uint64_t gw_shd_siphash(const uint64_t seed[2], const unsigned char *p, size_t n)
{
    uint64_t v[4] = {0x736f6d6570736575ULL ^ seed[0], 0x646f72616e646f6dULL ^ seed[1],
                     0x6c7967656e657261ULL ^ seed[0], 0x7465646279746573ULL ^ seed[1]};
    size_t end = n & ~(size_t)7;
    for (size_t i = 0; i < end; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8);
        v[3] ^= m;
        gw_shd_sipround(v);
        v[0] ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++)
        b |= (uint64_t)p[end + i] << (8 * i);
    v[3] ^= b;
    gw_shd_sipround(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    gw_shd_sipround(v);
    gw_shd_sipround(v);
    gw_shd_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---- the buddy allocator ---- */

static void gw_shd_free_push(gw_shdict_t *d, uint64_t off, unsigned order)
{
    gw_shd_hdr_t *h = d->hdr;
    gw_shd_entry_t *b = gw_shd_at(d, off);
    b->order = (uint8_t)order;
    b->state = GW_SHD_FREE;
    b->prev = 0;
    b->next = h->free_head[order];
    if (b->next)
        gw_shd_at(d, b->next)->prev = off;
    h->free_head[order] = off;
    h->avail |= UINT64_C(1) << order;
}

static void gw_shd_free_unlink(gw_shdict_t *d, uint64_t off)
{
    gw_shd_hdr_t *h = d->hdr;
    gw_shd_entry_t *b = gw_shd_at(d, off);
    if (b->prev)
        gw_shd_at(d, b->prev)->next = b->next;
    else
        h->free_head[b->order] = b->next;
    if (b->next)
        gw_shd_at(d, b->next)->prev = b->prev;
    if (!h->free_head[b->order])
        h->avail &= ~(UINT64_C(1) << b->order);
}

/*
 * A used block of `order`, split from the smallest free block that is large
 * enough; 0 when there is none. The block's header has order and state set,
 * the rest is left to the caller.
 */
static uint64_t gw_shd_alloc(gw_shdict_t *d, unsigned order)
{
    gw_shd_hdr_t *h = d->hdr;
    uint64_t avail = h->avail >> order;
    if (!avail)
        return 0;
    unsigned k = order + (unsigned)__builtin_ctzll(avail);
    uint64_t off = h->free_head[k];
    gw_shd_free_unlink(d, off);
    while (k > order) {
        k--;
        gw_shd_free_push(d, off + gw_shd_block_size(k), k);
    }
    gw_shd_entry_t *b = gw_shd_at(d, off);
    b->order = (uint8_t)order;
    b->state = GW_SHD_USED;
    h->free_bytes -= gw_shd_block_size(order);
    return off;
}

/* Return a used block to the heap, merging it with its free buddies. */
static void gw_shd_release(gw_shdict_t *d, uint64_t off)
{
    gw_shd_hdr_t *h = d->hdr;
    unsigned k = gw_shd_at(d, off)->order;
    h->free_bytes += gw_shd_block_size(k);
    uint64_t rel = off - h->heap_off;
    while (k + 1 < GW_SHD_ORDERS) {
        uint64_t size = gw_shd_block_size(k);
        uint64_t buddy = rel ^ size;
        if (buddy + size > h->heap_size)
            break;
        gw_shd_entry_t *b = gw_shd_at(d, h->heap_off + buddy);
        if (b->state != GW_SHD_FREE || b->order != k)
            break;
        gw_shd_free_unlink(d, h->heap_off + buddy);
        rel &= ~size;
        k++;
    }
    gw_shd_free_push(d, h->heap_off + rel, k);
}

/* Carve the whole heap into free blocks, largest first (its binary decomposition). */
static void gw_shd_carve(gw_shdict_t *d)
{
    gw_shd_hdr_t *h = d->hdr;
    uint64_t rel = 0;
    while (h->heap_size - rel >= gw_shd_block_size(0)) {
        uint64_t units = (h->heap_size - rel) >> GW_SHD_MIN_SHIFT;
        unsigned k = 63u - (unsigned)__builtin_clzll(units);
        while (rel & (gw_shd_block_size(k) - 1))
            k--;
        gw_shd_free_push(d, h->heap_off + rel, k);
        rel += gw_shd_block_size(k);
    }
}

/* The order of the smallest block holding `bytes`. */
static unsigned gw_shd_order_for(uint64_t bytes)
{
    uint64_t units = (bytes + gw_shd_block_size(0) - 1) >> GW_SHD_MIN_SHIFT;
    return units <= 1 ? 0 : 64u - (unsigned)__builtin_clzll(units - 1);
}

/* ---- the structure: buckets, LRU, reset ---- */

/*
 * Mark the start and the end of a change to the structure. The signal
 * fences keep the compiler from moving stores of the change across the
 * flag; a process killed in between leaves the flag set.
 */
static void gw_shd_begin(gw_shd_hdr_t *h)
{
    atomic_store_explicit(&h->dirty, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
}

static void gw_shd_end(gw_shd_hdr_t *h)
{
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&h->dirty, 0, memory_order_relaxed);
}

/* Empty the dict: clear the buckets and the lists, carve the heap afresh. */
static void gw_shd_reset(gw_shdict_t *d)
{
    gw_shd_hdr_t *h = d->hdr;
    memset(gw_shd_buckets(d), 0, h->nbuckets * sizeof(uint64_t));
    h->count = 0;
    h->lru_head = 0;
    h->lru_tail = 0;
    h->avail = 0;
    memset(h->free_head, 0, sizeof h->free_head);
    h->free_bytes = h->heap_size;
    gw_shd_carve(d);
}

static void gw_shd_lru_unlink(gw_shdict_t *d, gw_shd_entry_t *e)
{
    gw_shd_hdr_t *h = d->hdr;
    if (e->prev)
        gw_shd_at(d, e->prev)->next = e->next;
    else
        h->lru_head = e->next;
    if (e->next)
        gw_shd_at(d, e->next)->prev = e->prev;
    else
        h->lru_tail = e->prev;
}

static void gw_shd_lru_push(gw_shdict_t *d, uint64_t off, gw_shd_entry_t *e)
{
    gw_shd_hdr_t *h = d->hdr;
    e->prev = 0;
    e->next = h->lru_head;
    if (h->lru_head)
        gw_shd_at(d, h->lru_head)->prev = off;
    else
        h->lru_tail = off;
    h->lru_head = off;
}

/* The entry of `k`, expired or not, or 0. Reads only. */
static uint64_t gw_shd_find(gw_shdict_t *d, const gw_shd_key_t *k)
{
    uint32_t hash = (uint32_t)k->hash;
    uint64_t off = gw_shd_buckets(d)[hash & (d->hdr->nbuckets - 1)];
    while (off) {
        gw_shd_entry_t *e = gw_shd_at(d, off);
        if (e->hash == hash && e->klen == k->len && memcmp(gw_shd_key_of(e), k->p, k->len) == 0)
            return off;
        off = e->hnext;
    }
    return 0;
}

/* Take the entry at `off` off its chain and the LRU list and free it. */
static void gw_shd_remove(gw_shdict_t *d, uint64_t off)
{
    gw_shd_entry_t *e = gw_shd_at(d, off);
    uint64_t *link = &gw_shd_buckets(d)[e->hash & (d->hdr->nbuckets - 1)];
    while (*link && *link != off)
        link = &gw_shd_at(d, *link)->hnext;
    if (*link)
        *link = e->hnext;
    gw_shd_lru_unlink(d, e);
    d->hdr->count--;
    gw_shd_release(d, off);
}

/* The live entry of `k`, or 0; an expired one is removed on the way. */
static uint64_t gw_shd_find_live(gw_shdict_t *d, const gw_shd_key_t *k, double now)
{
    uint64_t off = gw_shd_find(d, k);
    if (off && gw_shd_expired(gw_shd_at(d, off), now)) {
        gw_shd_begin(d->hdr);
        gw_shd_remove(d, off);
        gw_shd_end(d->hdr);
        return 0;
    }
    return off;
}

/* Move an entry to the head of the LRU list. */
static void gw_shd_lru_front(gw_shdict_t *d, uint64_t off)
{
    if (d->hdr->lru_head == off)
        return;
    gw_shd_entry_t *e = gw_shd_at(d, off);
    gw_shd_lru_unlink(d, e);
    gw_shd_lru_push(d, off, e);
}

/*
 * gw_shd_lru_front as a change of its own, for readers. An entry already
 * at the head is left alone without marking the dict as being changed.
 */
static void gw_shd_touch(gw_shdict_t *d, uint64_t off)
{
    if (d->hdr->lru_head == off)
        return;
    gw_shd_begin(d->hdr);
    gw_shd_lru_front(d, off);
    gw_shd_end(d->hdr);
}

/*
 * Free expired entries among the `scan` least recently used ones.
 * Returns how many were freed.
 */
static int gw_shd_expire_tail(gw_shdict_t *d, double now, int scan)
{
    int freed = 0;
    uint64_t off = d->hdr->lru_tail;
    while (off && scan-- > 0) {
        gw_shd_entry_t *e = gw_shd_at(d, off);
        uint64_t prev = e->prev;
        if (gw_shd_expired(e, now)) {
            gw_shd_remove(d, off);
            freed++;
        }
        off = prev;
    }
    return freed;
}

/*
 * A used block of `order`, making room by freeing expired entries near the
 * LRU tail, then by evicting the least recently used entry, until a block
 * is free. Adds the live entries evicted to *evicted. Returns 0 only when
 * order is above max_order (the caller checks that first).
 */
static uint64_t gw_shd_alloc_evict(gw_shdict_t *d, unsigned order, double now, int *evicted)
{
    for (;;) {
        uint64_t off = gw_shd_alloc(d, order);
        if (off || !d->hdr->lru_tail)
            return off;
        if (gw_shd_expire_tail(d, now, GW_SHD_EXPIRE_SCAN) > 0)
            continue;
        gw_shd_remove(d, d->hdr->lru_tail);
        (*evicted)++;
    }
}

/* ---- values ---- */

/*
 * The block order an entry of key `k` and value `v` needs, or -1 when it is
 * larger than the dict's largest block.
 */
static int gw_shd_order_of(gw_shdict_t *d, const gw_shd_key_t *k, const gw_shd_val_t *v)
{
    uint64_t limit = gw_shd_block_size(d->hdr->max_order);
    uint64_t bytes = sizeof(gw_shd_entry_t) + k->len;
    if (v->type == GW_SHDICT_STRING) {
        if (v->slen > limit)
            return -1;
        bytes += v->slen;
    }
    return bytes > limit ? -1 : (int)gw_shd_order_for(bytes);
}

static void gw_shd_write_value(gw_shd_entry_t *e, const gw_shd_val_t *v)
{
    e->type = (uint8_t)v->type;
    e->expires = v->expires;
    if (v->type == GW_SHDICT_STRING) {
        e->v.slen = v->slen;
        if (v->slen)
            memcpy(gw_shd_key_of(e) + e->klen, v->str, v->slen);
    } else {
        e->v.num = v->type == GW_SHDICT_BOOLEAN ? (v->num != 0) : v->num;
    }
}

/*
 * Make `k` hold `v` in a block of `order` (at most max_order). `old` is the
 * key's live entry or 0: it is rewritten in place when its block has the
 * same order, else freed before a new block is taken. The entry ends up at
 * the LRU head. Adds the live entries evicted to *evicted. Must run between
 * gw_shd_begin and gw_shd_end. Returns GW_OK or GW_ERROR (no room).
 */
static int gw_shd_store(gw_shdict_t *d, uint64_t old, const gw_shd_key_t *k, const gw_shd_val_t *v,
                        unsigned order, double now, int *evicted)
{
    gw_shd_hdr_t *h = d->hdr;
    if (old && gw_shd_at(d, old)->order == order) {
        gw_shd_write_value(gw_shd_at(d, old), v);
        gw_shd_lru_front(d, old);
        return GW_OK;
    }
    if (old)
        gw_shd_remove(d, old);
    uint64_t off = gw_shd_alloc_evict(d, order, now, evicted);
    if (!off)
        return GW_ERROR;
    gw_shd_entry_t *e = gw_shd_at(d, off);
    e->hash = (uint32_t)k->hash;
    e->klen = (uint32_t)k->len;
    memcpy(gw_shd_key_of(e), k->p, k->len);
    gw_shd_write_value(e, v);
    uint64_t *bucket = &gw_shd_buckets(d)[e->hash & (h->nbuckets - 1)];
    e->hnext = *bucket;
    *bucket = off;
    gw_shd_lru_push(d, off, e);
    h->count++;
    return GW_OK;
}

/* ---- locking ---- */

/*
 * Called with the lock just taken from a process that died holding it:
 * flush the dict if that process was changing it. Leaves the flag set
 * until the flush is complete.
 */
static void gw_shd_recover(gw_shdict_t *d)
{
    gw_shd_hdr_t *h = d->hdr;
    if (!atomic_load_explicit(&h->dirty, memory_order_relaxed)) {
        gw_log_warn("shdict \"%s\": a process died holding the lock while not changing "
                    "the dict; its %llu entries are kept",
                    d->name, (unsigned long long)h->count);
        return;
    }
    unsigned long long lost = (unsigned long long)h->count;
    gw_shd_reset(d);
    gw_shd_end(h);
    gw_log_warn("shdict \"%s\": a process died holding the lock in the middle of a change; "
                "the dict was flushed (%llu entries lost)",
                d->name, lost);
}

/* Take the dict's lock, recovering it from a dead owner. GW_OK or GW_ERROR. */
static int gw_shd_lock(gw_shdict_t *d)
{
    int rc = pthread_mutex_lock(&d->hdr->lock);
    if (rc == EOWNERDEAD) {
        gw_shd_recover(d);
        rc = pthread_mutex_consistent(&d->hdr->lock);
    }
    if (rc != 0) {
        gw_log_error("shdict \"%s\": cannot lock: %s", d->name, strerror(rc));
        return GW_ERROR;
    }
    return GW_OK;
}

static void gw_shd_unlock(gw_shdict_t *d)
{
    pthread_mutex_unlock(&d->hdr->lock);
}

static bool gw_shd_key_ok(const char *key, size_t klen)
{
    return key && klen > 0 && klen <= GW_SHDICT_KEY_MAX;
}

static gw_shd_key_t gw_shd_key(gw_shdict_t *d, const char *key, size_t klen)
{
    gw_shd_key_t k = {key, klen, gw_shd_siphash(d->hdr->seed, (const unsigned char *)key, klen)};
    return k;
}

/* An absolute expiry time for `ttl` seconds from `now`; 0 for none. */
static double gw_shd_expires(double ttl, double now)
{
    return (ttl == 0 || isinf(ttl)) ? 0 : now + ttl;
}

/* ---- creation and the registry ---- */

static size_t gw_shd_page_round(size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    return (n + pg - 1) / pg * pg;
}

static int gw_shd_init_lock(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        return GW_ERROR;
    int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc == 0 ? GW_OK : GW_ERROR;
}

static void gw_shd_seed(gw_shd_hdr_t *h)
{
    if (getrandom(h->seed, sizeof h->seed, GRND_NONBLOCK) == (ssize_t)sizeof h->seed)
        return;
    double t = gw_wall_now();
    memcpy(&h->seed[0], &t, sizeof t);
    h->seed[1] = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)h;
}

gw_shdict_t *gw_shdict_create(const char *name, size_t capacity_bytes)
{
    uint64_t max_heap = gw_shd_block_size(GW_SHD_ORDERS - 1);
    if (!name || !*name || capacity_bytes < gw_shd_block_size(0) || capacity_bytes > max_heap) {
        gw_log_error("shdict \"%s\": invalid name or capacity %zu", name ? name : "",
                     capacity_bytes);
        return NULL;
    }
    uint64_t heap = ((uint64_t)capacity_bytes + 63) & ~UINT64_C(63);
    uint64_t nbuckets = 16;
    while (nbuckets * GW_SHD_BUCKET_HEAP < heap && nbuckets < GW_SHD_MAX_BUCKETS)
        nbuckets <<= 1;
    size_t hdr_size = gw_shd_page_round(sizeof(gw_shd_hdr_t));
    size_t buckets_size = gw_shd_page_round(nbuckets * sizeof(uint64_t));
    size_t map_size = hdr_size + buckets_size + gw_shd_page_round(heap);

    gw_shdict_t *d = calloc(1, sizeof *d);
    char *copy = strdup(name);
    void *p = MAP_FAILED;
    if (d && copy)
        p = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_log_error("shdict \"%s\": cannot map %zu bytes: %s", name, map_size, strerror(errno));
        free(copy);
        free(d);
        return NULL;
    }
    d->hdr = p;
    d->map_size = map_size;
    d->name = copy;
    gw_shd_hdr_t *h = d->hdr;
    if (gw_shd_init_lock(&h->lock) != GW_OK) {
        gw_log_error("shdict \"%s\": cannot create a process-shared robust mutex", name);
        gw_shdict_destroy(d);
        return NULL;
    }
    gw_shd_seed(h);
    h->nbuckets = nbuckets;
    h->buckets_off = hdr_size;
    h->heap_off = hdr_size + buckets_size;
    h->heap_size = heap;
    h->max_order = 63u - (unsigned)__builtin_clzll(heap >> GW_SHD_MIN_SHIFT);
    gw_shd_reset(d); /* the mapping is zeroed: this only carves the heap */
    return d;
}

void gw_shdict_destroy(gw_shdict_t *d)
{
    if (!d)
        return;
    if (d->registered) {
        gw_shdict_t **link = &gw_shd_registry;
        while (*link && *link != d)
            link = &(*link)->next;
        if (*link)
            *link = d->next;
    }
    munmap(d->hdr, d->map_size);
    free(d->name);
    free(d);
}

const char *gw_shdict_name(gw_shdict_t *d)
{
    return d ? d->name : NULL;
}

int gw_shdict_register(gw_shdict_t *d)
{
    if (!d)
        return GW_ERROR;
    if (d->registered)
        return GW_OK;
    if (gw_shdict_find(d->name))
        return GW_DECLINED;
    d->next = gw_shd_registry;
    gw_shd_registry = d;
    d->registered = true;
    return GW_OK;
}

gw_shdict_t *gw_shdict_find(const char *name)
{
    if (!name)
        return NULL;
    for (gw_shdict_t *d = gw_shd_registry; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

/* ---- operations ---- */

int gw_shdict_get(gw_shdict_t *d, const char *key, size_t klen, int *type, double *num, char *buf,
                  size_t bufsize, size_t *vlen, double *ttl_left)
{
    int t = GW_SHDICT_NIL;
    double n = 0, left = 0;
    size_t len = 0;
    int rc = GW_OK;
    if (!d || !gw_shd_key_ok(key, klen))
        rc = GW_ERROR;
    else {
        gw_shd_key_t k = gw_shd_key(d, key, klen);
        double now = gw_now();
        if (gw_shd_lock(d) != GW_OK)
            return GW_ERROR;
        uint64_t off = gw_shd_find_live(d, &k, now);
        if (off) {
            gw_shd_touch(d, off);
            gw_shd_entry_t *e = gw_shd_at(d, off);
            t = e->type;
            left = e->expires != 0 ? e->expires - now : 0;
            if (t != GW_SHDICT_STRING)
                n = e->v.num;
            else if ((len = (size_t)e->v.slen) > 0 && (len > bufsize || !buf))
                rc = GW_AGAIN;
            else if (len)
                memcpy(buf, gw_shd_key_of(e) + e->klen, len);
        }
        gw_shd_unlock(d);
    }
    if (type)
        *type = t;
    if (num)
        *num = n;
    if (vlen)
        *vlen = len;
    if (ttl_left)
        *ttl_left = left;
    return rc;
}

static bool gw_shd_set_args_ok(int type, const char *str, size_t slen, double ttl, int flags)
{
    return type >= GW_SHDICT_NIL && type <= GW_SHDICT_BOOLEAN && ttl >= 0 &&
           (flags & ~(GW_SHDICT_ADD | GW_SHDICT_REPLACE)) == 0 &&
           flags != (GW_SHDICT_ADD | GW_SHDICT_REPLACE) &&
           !(type == GW_SHDICT_STRING && !str && slen);
}

int gw_shdict_set(gw_shdict_t *d, const char *key, size_t klen, int type, double num,
                  const char *str, size_t slen, double ttl, int flags, int *evicted)
{
    if (evicted)
        *evicted = 0;
    if (!d || !gw_shd_key_ok(key, klen) || !gw_shd_set_args_ok(type, str, slen, ttl, flags))
        return GW_ERROR;
    gw_shd_key_t k = gw_shd_key(d, key, klen);
    double now = gw_now();
    gw_shd_val_t v = {type, num, str, slen, gw_shd_expires(ttl, now)};
    int order = 0;
    if (type != GW_SHDICT_NIL && (order = gw_shd_order_of(d, &k, &v)) < 0)
        return GW_ERROR;
    if (gw_shd_lock(d) != GW_OK)
        return GW_ERROR;
    uint64_t old = gw_shd_find_live(d, &k, now);
    int rc = GW_OK, n = 0;
    if (((flags & GW_SHDICT_ADD) && old) || ((flags & GW_SHDICT_REPLACE) && !old)) {
        rc = GW_DECLINED;
    } else if (type == GW_SHDICT_NIL) {
        if (old) {
            gw_shd_begin(d->hdr);
            gw_shd_remove(d, old);
            gw_shd_end(d->hdr);
        }
    } else {
        gw_shd_begin(d->hdr);
        rc = gw_shd_store(d, old, &k, &v, (unsigned)order, now, &n);
        gw_shd_end(d->hdr);
    }
    gw_shd_unlock(d);
    if (evicted)
        *evicted = n;
    return rc;
}

int gw_shdict_incr(gw_shdict_t *d, const char *key, size_t klen, double delta, bool has_init,
                   double init, double init_ttl, double *out)
{
    if (!d || !gw_shd_key_ok(key, klen) || (has_init && !(init_ttl >= 0)))
        return GW_ERROR;
    gw_shd_key_t k = gw_shd_key(d, key, klen);
    double now = gw_now();
    gw_shd_val_t v = {GW_SHDICT_NUMBER, init + delta, NULL, 0, gw_shd_expires(init_ttl, now)};
    int order = gw_shd_order_of(d, &k, &v);
    if (gw_shd_lock(d) != GW_OK)
        return GW_ERROR;
    uint64_t off = gw_shd_find_live(d, &k, now);
    int rc = GW_OK, evicted = 0;
    double result = 0;
    if (off) {
        gw_shd_entry_t *e = gw_shd_at(d, off);
        if (e->type != GW_SHDICT_NUMBER) {
            rc = GW_ERROR;
        } else {
            gw_shd_begin(d->hdr);
            result = e->v.num += delta;
            gw_shd_lru_front(d, off);
            gw_shd_end(d->hdr);
        }
    } else if (!has_init) {
        rc = GW_DECLINED;
    } else if (order < 0) {
        rc = GW_ERROR;
    } else {
        gw_shd_begin(d->hdr);
        rc = gw_shd_store(d, 0, &k, &v, (unsigned)order, now, &evicted);
        gw_shd_end(d->hdr);
        result = v.num;
    }
    gw_shd_unlock(d);
    if (out && rc == GW_OK)
        *out = result;
    return rc;
}

int gw_shdict_delete(gw_shdict_t *d, const char *key, size_t klen)
{
    if (!d || !gw_shd_key_ok(key, klen))
        return GW_ERROR;
    gw_shd_key_t k = gw_shd_key(d, key, klen);
    double now = gw_now();
    if (gw_shd_lock(d) != GW_OK)
        return GW_ERROR;
    uint64_t off = gw_shd_find_live(d, &k, now);
    if (off) {
        gw_shd_begin(d->hdr);
        gw_shd_remove(d, off);
        gw_shd_end(d->hdr);
    }
    gw_shd_unlock(d);
    return off ? GW_OK : GW_DECLINED;
}

size_t gw_shdict_count(gw_shdict_t *d)
{
    if (!d || gw_shd_lock(d) != GW_OK)
        return 0;
    size_t n = (size_t)d->hdr->count;
    gw_shd_unlock(d);
    return n;
}

size_t gw_shdict_free_space(gw_shdict_t *d)
{
    if (!d || gw_shd_lock(d) != GW_OK)
        return 0;
    size_t n = (size_t)d->hdr->free_bytes;
    gw_shd_unlock(d);
    return n;
}

void gw_shdict_flush_all(gw_shdict_t *d)
{
    if (!d || gw_shd_lock(d) != GW_OK)
        return;
    gw_shd_begin(d->hdr);
    gw_shd_reset(d);
    gw_shd_end(d->hdr);
    gw_shd_unlock(d);
}

size_t gw_shdict_flush_expired(gw_shdict_t *d, size_t max_count)
{
    if (!d)
        return 0;
    double now = gw_now();
    if (gw_shd_lock(d) != GW_OK)
        return 0;
    size_t n = 0;
    gw_shd_begin(d->hdr);
    uint64_t off = d->hdr->lru_tail;
    while (off && (max_count == 0 || n < max_count)) {
        gw_shd_entry_t *e = gw_shd_at(d, off);
        uint64_t prev = e->prev;
        if (gw_shd_expired(e, now)) {
            gw_shd_remove(d, off);
            n++;
        }
        off = prev;
    }
    gw_shd_end(d->hdr);
    gw_shd_unlock(d);
    return n;
}
