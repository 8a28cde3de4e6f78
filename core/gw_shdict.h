/*
 * Named dictionaries in shared memory, shared by all worker processes (what
 * OpenResty calls lua_shared_dict). The master creates each dict before
 * forking; every worker inherits the mapping and the process-local registry
 * that finds a dict by name.
 *
 * A dict maps byte-string keys (1..GW_SHDICT_KEY_MAX bytes) to typed values:
 * a string, a number (double) or a boolean. An entry may carry a time to
 * live; expired entries read as absent and are removed when met. When the
 * dict is full, storing evicts the least recently used entries (get and set
 * both count as a use).
 *
 * `capacity_bytes` is the memory for entries; each entry takes the smallest
 * power-of-two block (64 bytes or more) that holds a 56-byte header, the key
 * and the value, so one entry can be as large as the largest power of two
 * not above the capacity. Hash buckets and the header are mapped on top
 * (about 3 to 6 % of the capacity, plus a page or two).
 *
 * Every call takes the dict's process-shared lock for a short, bounded time
 * (O(1) expected, plus copying the value) and never blocks otherwise. A
 * process that dies holding the lock does not block the others: the next
 * process to lock finds out, flushes the dict if the dead process was in
 * the middle of changing it, and logs a warning.
 *
 * The API is meant for the LuaJIT FFI: plain C types, caller-supplied
 * buffers, no varargs, no macros. Return codes are those of gw_core.h; each
 * function says what its GW_DECLINED and GW_ERROR mean. Invalid arguments
 * (NULL dict, empty or too long key, unknown type or flags, negative or NaN
 * TTL) give GW_ERROR; the Lua wrapper is expected to check them first and
 * report misuse itself.
 */
#ifndef GW_SHDICT_H
#define GW_SHDICT_H

#include "gw_core.h"

typedef struct gw_shdict_s gw_shdict_t;

/* Value types; GW_SHDICT_NIL is what an absent or expired key reads as. */
enum {
    GW_SHDICT_NIL = 0,
    GW_SHDICT_STRING = 1,
    GW_SHDICT_NUMBER = 2,
    GW_SHDICT_BOOLEAN = 3,
};

/* Flags of gw_shdict_set. */
enum {
    GW_SHDICT_ADD = 1,     /* store only if the key is absent or expired */
    GW_SHDICT_REPLACE = 2, /* store only if the key is present */
};

enum {
    GW_SHDICT_KEY_MAX = 65535,
};

/*
 * Master, before forking: map a dict of `capacity_bytes` (at least 64,
 * rounded up to a multiple of 64) for entries. Returns NULL (and logs) when
 * the arguments are invalid or memory cannot be mapped. `name` is copied.
 */
gw_shdict_t *gw_shdict_create(const char *name, size_t capacity_bytes);

/*
 * Unmap this process's view of the dict and unregister it here. Other
 * processes keep their mappings; the memory goes away with the last one.
 * Accepts NULL.
 */
void gw_shdict_destroy(gw_shdict_t *d);

/* The name given to gw_shdict_create. */
const char *gw_shdict_name(gw_shdict_t *d);

/*
 * Read `key`. Every output pointer may be NULL. Sets *type to the value's
 * type (GW_SHDICT_NIL when absent or expired), *num to a number's value or
 * a boolean's (0 or 1), copies a string into buf and sets *vlen to its
 * length, and sets *ttl_left to the seconds left before expiry (0: none).
 * Returns GW_OK; GW_AGAIN when the string is longer than bufsize (nothing
 * copied, *type and *vlen set: retry with a buffer of *vlen bytes; the
 * value may change in between); GW_ERROR on invalid arguments.
 */
int gw_shdict_get(gw_shdict_t *d, const char *key, size_t klen, int *type, double *num, char *buf,
                  size_t bufsize, size_t *vlen, double *ttl_left);

/*
 * Store a value of `type` under `key`: `num` for a number or a boolean
 * (non-zero is true), str[0..slen) for a string; GW_SHDICT_NIL deletes the
 * key. `ttl` is in seconds, 0 for none. `flags` is 0, GW_SHDICT_ADD or
 * GW_SHDICT_REPLACE. *evicted (may be NULL) is set to how many live
 * entries were evicted to make room (expired ones are not counted).
 * Returns GW_OK; GW_DECLINED when the flags refused ("exists" for ADD,
 * "not found" for REPLACE; nothing changed); GW_ERROR "no memory" when the
 * entry is larger than the dict's largest block (nothing changed), or on
 * invalid arguments.
 */
int gw_shdict_set(gw_shdict_t *d, const char *key, size_t klen, int type, double num,
                  const char *str, size_t slen, double ttl, int flags, int *evicted);

/*
 * Add `delta` to the number under `key` and set *out (may be NULL) to the
 * result; the entry keeps its TTL. When the key is absent or expired and
 * has_init is true, store init + delta with a TTL of init_ttl (0: none).
 * Returns GW_OK; GW_DECLINED "not found" when absent and !has_init;
 * GW_ERROR "not a number" when the value is not a number, "no memory"
 * when the key is too large for the dict, or on invalid arguments.
 */
int gw_shdict_incr(gw_shdict_t *d, const char *key, size_t klen, double delta, bool has_init,
                   double init, double init_ttl, double *out);

/*
 * Remove `key`. Returns GW_OK when an entry was removed, GW_DECLINED when
 * there was none (or it had expired), GW_ERROR on invalid arguments.
 */
int gw_shdict_delete(gw_shdict_t *d, const char *key, size_t klen);

/* Entries stored, counting expired ones not removed yet. 0 for NULL. */
size_t gw_shdict_count(gw_shdict_t *d);

/*
 * Bytes of the capacity in free blocks. A value needs one free block of
 * its power-of-two size, so this is an upper bound of what fits.
 */
size_t gw_shdict_free_space(gw_shdict_t *d);

/* Remove every entry. O(number of buckets). */
void gw_shdict_flush_all(gw_shdict_t *d);

/*
 * Remove expired entries, at most max_count of them (0: no limit), going
 * from the least recently used. Returns how many were removed. Walks the
 * whole dict in the worst case: for timers, not for the request path.
 */
size_t gw_shdict_flush_expired(gw_shdict_t *d, size_t max_count);

/*
 * The process-local registry, inherited by fork. Not thread-safe: register
 * in the master before forking. gw_shdict_register returns GW_OK (also when
 * d is already registered), GW_DECLINED when another dict has that name,
 * GW_ERROR for NULL. gw_shdict_find returns NULL for an unknown name.
 */
int gw_shdict_register(gw_shdict_t *d);
gw_shdict_t *gw_shdict_find(const char *name);

#endif
