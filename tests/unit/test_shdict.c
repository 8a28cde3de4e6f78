/* Unit tests for the shared-memory dictionaries (gw_shdict.c). */
#include "gw_log.h"
#include "gw_shdict.h"
#include "gw_test.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEY(s) (s), strlen(s)

/* A value of ~1 MiB whose entry fits a 1 MiB block, for the crash tests. */
#define BIG_LEN ((1u << 20) - 1024)
static char big[BIG_LEN];
static char big_out[BIG_LEN];

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int set_num(gw_shdict_t *d, const char *key, double num, double ttl, int flags)
{
    return gw_shdict_set(d, KEY(key), GW_SHDICT_NUMBER, num, NULL, 0, ttl, flags, NULL);
}

static int set_str(gw_shdict_t *d, const char *key, const char *val, double ttl, int flags)
{
    return gw_shdict_set(d, KEY(key), GW_SHDICT_STRING, 0, val, strlen(val), ttl, flags, NULL);
}

/* The type of `key`'s value, GW_SHDICT_NIL when absent; a use of the key. */
static int type_of(gw_shdict_t *d, const char *key)
{
    int type = -1;
    int rc = gw_shdict_get(d, KEY(key), &type, NULL, NULL, 0, NULL, NULL);
    return rc == GW_OK || rc == GW_AGAIN ? type : -1;
}

/* The number under `key`, or -1 when it is not a number. */
static double num_of(gw_shdict_t *d, const char *key)
{
    int type = -1;
    double num = 0;
    int rc = gw_shdict_get(d, KEY(key), &type, &num, NULL, 0, NULL, NULL);
    return rc == GW_OK && type == GW_SHDICT_NUMBER ? num : -1;
}

/* The string under `key` in a static buffer, or NULL. */
static const char *str_of(gw_shdict_t *d, const char *key)
{
    static char buf[4096];
    int type = -1;
    size_t len = 0;
    int rc = gw_shdict_get(d, KEY(key), &type, NULL, buf, sizeof buf - 1, &len, NULL);
    if (rc != GW_OK || type != GW_SHDICT_STRING)
        return NULL;
    buf[len] = '\0';
    return buf;
}

static void test_types(void)
{
    gw_shdict_t *d = gw_shdict_create("types", 256 * 1024);
    CHECK(d != NULL);
    CHECK_STR(gw_shdict_name(d), "types");
    CHECK_INT(set_str(d, "s", "hello", 0, 0), GW_OK);
    CHECK_INT(set_num(d, "n", 3.25, 0, 0), GW_OK);
    CHECK_INT(gw_shdict_set(d, KEY("t"), GW_SHDICT_BOOLEAN, 7, NULL, 0, 0, 0, NULL), GW_OK);
    CHECK_INT(gw_shdict_set(d, KEY("f"), GW_SHDICT_BOOLEAN, 0, NULL, 0, 0, 0, NULL), GW_OK);
    CHECK_INT(set_str(d, "empty", "", 0, 0), GW_OK);
    CHECK_INT(gw_shdict_count(d), 5);

    int type = -1;
    double num = -1, ttl = -1;
    char buf[16];
    size_t len = 0;
    CHECK_INT(gw_shdict_get(d, KEY("s"), &type, &num, buf, sizeof buf, &len, &ttl), GW_OK);
    CHECK_INT(type, GW_SHDICT_STRING);
    CHECK_INT(len, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(ttl == 0);
    CHECK_INT(gw_shdict_get(d, KEY("n"), &type, &num, NULL, 0, &len, NULL), GW_OK);
    CHECK_INT(type, GW_SHDICT_NUMBER);
    CHECK(num == 3.25);
    CHECK_INT(gw_shdict_get(d, KEY("t"), &type, &num, NULL, 0, NULL, NULL), GW_OK);
    CHECK_INT(type, GW_SHDICT_BOOLEAN);
    CHECK(num == 1);
    CHECK_INT(gw_shdict_get(d, KEY("f"), &type, &num, NULL, 0, NULL, NULL), GW_OK);
    CHECK_INT(type, GW_SHDICT_BOOLEAN);
    CHECK(num == 0);
    CHECK_INT(gw_shdict_get(d, KEY("empty"), &type, NULL, NULL, 0, &len, NULL), GW_OK);
    CHECK_INT(type, GW_SHDICT_STRING);
    CHECK_INT(len, 0);

    /* binary keys and values, a key of the maximum length */
    char key[GW_SHDICT_KEY_MAX];
    memset(key, 'k', sizeof key);
    key[3] = '\0';
    CHECK_INT(gw_shdict_set(d, key, sizeof key, GW_SHDICT_STRING, 0, "a\0b", 3, 0, 0, NULL), GW_OK);
    CHECK_INT(gw_shdict_get(d, key, sizeof key, &type, NULL, buf, sizeof buf, &len, NULL), GW_OK);
    CHECK_INT(len, 3);
    CHECK(memcmp(buf, "a\0b", 3) == 0);
    CHECK_INT(gw_shdict_get(d, key, 4, &type, NULL, buf, sizeof buf, &len, NULL), GW_OK);
    CHECK_INT(type, GW_SHDICT_NIL);
    gw_shdict_destroy(d);
}

static void test_missing_and_bad_args(void)
{
    gw_shdict_t *d = gw_shdict_create("missing", 4096);
    int type = -1;
    double num = -1, ttl = -1;
    size_t len = 99;
    CHECK_INT(gw_shdict_get(d, KEY("nope"), &type, &num, NULL, 0, &len, &ttl), GW_OK);
    CHECK_INT(type, GW_SHDICT_NIL);
    CHECK_INT(len, 0);
    CHECK(num == 0 && ttl == 0);
    CHECK_INT(gw_shdict_delete(d, KEY("nope")), GW_DECLINED);
    CHECK_INT(gw_shdict_incr(d, KEY("nope"), 1, false, 0, 0, NULL), GW_DECLINED);
    CHECK_INT(type_of(d, "nope"), GW_SHDICT_NIL);

    CHECK_INT(gw_shdict_get(NULL, KEY("a"), &type, NULL, NULL, 0, NULL, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_get(d, "", 0, &type, NULL, NULL, 0, NULL, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_get(d, NULL, 1, &type, NULL, NULL, 0, NULL, NULL), GW_ERROR);
    static char longkey[GW_SHDICT_KEY_MAX + 1];
    CHECK_INT(gw_shdict_set(d, longkey, sizeof longkey, GW_SHDICT_NUMBER, 1, NULL, 0, 0, 0, NULL),
              GW_ERROR);
    CHECK_INT(gw_shdict_set(d, KEY("a"), 9, 1, NULL, 0, 0, 0, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_NUMBER, 1, NULL, 0, -1, 0, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_NUMBER, 1, NULL, 0, NAN, 0, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_NUMBER, 1, NULL, 0, 0,
                            GW_SHDICT_ADD | GW_SHDICT_REPLACE, NULL),
              GW_ERROR);
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_STRING, 0, NULL, 3, 0, 0, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_incr(d, KEY("a"), 1, true, 0, -1, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_count(d), 0);
    gw_log_level_t level = gw_log_level;
    gw_log_reopen("/dev/null", level); /* the two errors below are logged */
    CHECK(gw_shdict_create("tiny", 63) == NULL);
    CHECK(gw_shdict_create(NULL, 4096) == NULL);
    gw_log_reopen("stderr", level);
    gw_shdict_destroy(d);
    gw_shdict_destroy(NULL);
}

static void test_add_replace(void)
{
    gw_shdict_t *d = gw_shdict_create("addrep", 4096);
    CHECK_INT(set_num(d, "a", 1, 0, GW_SHDICT_REPLACE), GW_DECLINED);
    CHECK_INT(type_of(d, "a"), GW_SHDICT_NIL);
    CHECK_INT(set_num(d, "a", 1, 0, GW_SHDICT_ADD), GW_OK);
    CHECK_INT(set_num(d, "a", 2, 0, GW_SHDICT_ADD), GW_DECLINED);
    CHECK(num_of(d, "a") == 1);
    CHECK_INT(set_str(d, "a", "two", 0, GW_SHDICT_REPLACE), GW_OK);
    CHECK_STR(str_of(d, "a"), "two");
    /* nil with flags: ADD refuses on a present key, REPLACE deletes it */
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_NIL, 0, NULL, 0, 0, GW_SHDICT_ADD, NULL),
              GW_DECLINED);
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_NIL, 0, NULL, 0, 0, GW_SHDICT_REPLACE, NULL),
              GW_OK);
    CHECK_INT(type_of(d, "a"), GW_SHDICT_NIL);
    CHECK_INT(gw_shdict_set(d, KEY("a"), GW_SHDICT_NIL, 0, NULL, 0, 0, GW_SHDICT_REPLACE, NULL),
              GW_DECLINED);
    /* an expired key counts as absent */
    CHECK_INT(set_num(d, "e", 1, 0.05, 0), GW_OK);
    CHECK_INT(set_num(d, "e", 2, 0, GW_SHDICT_ADD), GW_DECLINED);
    sleep_s(0.1);
    CHECK_INT(set_num(d, "e", 3, 0, GW_SHDICT_REPLACE), GW_DECLINED);
    CHECK_INT(set_num(d, "e", 4, 0, GW_SHDICT_ADD), GW_OK);
    CHECK(num_of(d, "e") == 4);
    gw_shdict_destroy(d);
}

static void test_incr(void)
{
    gw_shdict_t *d = gw_shdict_create("incr", 4096);
    double out = -1;
    CHECK_INT(gw_shdict_incr(d, KEY("n"), 1, false, 0, 0, &out), GW_DECLINED);
    CHECK_INT(gw_shdict_incr(d, KEY("n"), 1, true, 10, 0, &out), GW_OK);
    CHECK(out == 11);
    CHECK_INT(gw_shdict_incr(d, KEY("n"), -2.5, true, 100, 0, &out), GW_OK);
    CHECK(out == 8.5);
    CHECK(num_of(d, "n") == 8.5);
    CHECK_INT(set_str(d, "s", "x", 0, 0), GW_OK);
    CHECK_INT(gw_shdict_incr(d, KEY("s"), 1, true, 0, 0, &out), GW_ERROR);
    CHECK_STR(str_of(d, "s"), "x");
    CHECK_INT(gw_shdict_set(d, KEY("b"), GW_SHDICT_BOOLEAN, 1, NULL, 0, 0, 0, NULL), GW_OK);
    CHECK_INT(gw_shdict_incr(d, KEY("b"), 1, false, 0, 0, &out), GW_ERROR);

    /* init_ttl applies to a new entry; incr keeps an entry's TTL */
    CHECK_INT(gw_shdict_incr(d, KEY("t"), 1, true, 0, 0.05, &out), GW_OK);
    CHECK(out == 1);
    CHECK_INT(gw_shdict_incr(d, KEY("t"), 1, true, 0, 0, &out), GW_OK);
    CHECK(out == 2);
    CHECK_INT(set_num(d, "k", 5, 0.05, 0), GW_OK);
    CHECK_INT(gw_shdict_incr(d, KEY("k"), 1, true, 0, 0, &out), GW_OK);
    CHECK(out == 6);
    sleep_s(0.1);
    CHECK_INT(type_of(d, "t"), GW_SHDICT_NIL);
    CHECK_INT(type_of(d, "k"), GW_SHDICT_NIL);
    CHECK_INT(gw_shdict_incr(d, KEY("k"), 1, false, 0, 0, &out), GW_DECLINED);
    CHECK_INT(gw_shdict_incr(d, KEY("k"), 1, true, 40, 0, &out), GW_OK);
    CHECK(out == 41);
    gw_shdict_destroy(d);
}

static void test_ttl(void)
{
    gw_shdict_t *d = gw_shdict_create("ttl", 4096);
    CHECK_INT(set_str(d, "short", "v", 0.05, 0), GW_OK);
    CHECK_INT(set_num(d, "long", 1, 10, 0), GW_OK);
    CHECK_INT(set_num(d, "forever", 1, 0, 0), GW_OK);
    int type = -1;
    double ttl = -1;
    CHECK_INT(gw_shdict_get(d, KEY("short"), &type, NULL, NULL, 0, NULL, &ttl), GW_AGAIN);
    CHECK(ttl > 0 && ttl <= 0.05);
    CHECK_INT(gw_shdict_get(d, KEY("long"), &type, NULL, NULL, 0, NULL, &ttl), GW_OK);
    CHECK(ttl > 9 && ttl <= 10);
    CHECK_STR(str_of(d, "short"), "v");
    sleep_s(0.1);
    CHECK_INT(gw_shdict_get(d, KEY("short"), &type, NULL, NULL, 0, NULL, &ttl), GW_OK);
    CHECK_INT(type, GW_SHDICT_NIL);
    CHECK(ttl == 0);
    CHECK_INT(gw_shdict_count(d), 2); /* the expired entry was removed when read */
    CHECK_INT(type_of(d, "long"), GW_SHDICT_NUMBER);

    /* a set without TTL clears one; a set with a TTL adds one */
    CHECK_INT(set_num(d, "long", 2, 0, 0), GW_OK);
    CHECK_INT(gw_shdict_get(d, KEY("long"), &type, NULL, NULL, 0, NULL, &ttl), GW_OK);
    CHECK(ttl == 0);
    CHECK_INT(set_num(d, "forever", 2, 0.05, 0), GW_OK);
    sleep_s(0.1);
    CHECK_INT(type_of(d, "forever"), GW_SHDICT_NIL);
    CHECK_INT(gw_shdict_delete(d, KEY("forever")), GW_DECLINED);
    gw_shdict_destroy(d);
}

static void test_delete(void)
{
    gw_shdict_t *d = gw_shdict_create("delete", 4096);
    size_t empty = gw_shdict_free_space(d);
    CHECK_INT(empty, 4096);
    CHECK_INT(set_str(d, "a", "1", 0, 0), GW_OK);
    CHECK_INT(set_str(d, "b", "2", 0, 0), GW_OK);
    CHECK(gw_shdict_free_space(d) < empty);
    CHECK_INT(gw_shdict_delete(d, KEY("a")), GW_OK);
    CHECK_INT(gw_shdict_delete(d, KEY("a")), GW_DECLINED);
    CHECK_INT(type_of(d, "a"), GW_SHDICT_NIL);
    CHECK_STR(str_of(d, "b"), "2");
    CHECK_INT(gw_shdict_set(d, KEY("b"), GW_SHDICT_NIL, 0, NULL, 0, 0, 0, NULL), GW_OK);
    CHECK_INT(type_of(d, "b"), GW_SHDICT_NIL);
    CHECK_INT(gw_shdict_count(d), 0);
    CHECK_INT(gw_shdict_free_space(d), empty);
    gw_shdict_destroy(d);
}

static void test_overwrite_sizes(void)
{
    gw_shdict_t *d = gw_shdict_create("overwrite", 64 * 1024);
    char val[3000];
    memset(val, 'x', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    CHECK_INT(set_str(d, "a", "small", 0, 0), GW_OK);
    size_t small_free = gw_shdict_free_space(d);
    CHECK_INT(set_str(d, "a", val, 0, 0), GW_OK);
    CHECK(gw_shdict_free_space(d) < small_free);
    CHECK_STR(str_of(d, "a"), val);
    CHECK_INT(set_str(d, "a", "tiny", 0, 0), GW_OK);
    CHECK_STR(str_of(d, "a"), "tiny");
    CHECK_INT(gw_shdict_free_space(d), small_free);
    CHECK_INT(set_num(d, "a", 42, 0, 0), GW_OK);
    CHECK(num_of(d, "a") == 42);
    CHECK_INT(set_str(d, "a", "again", 0, 0), GW_OK);
    CHECK_STR(str_of(d, "a"), "again");
    CHECK_INT(gw_shdict_count(d), 1);
    gw_shdict_destroy(d);
}

/* 16 blocks of 64 bytes; "kNN" keys with numbers take one block each. */
static gw_shdict_t *full_dict(void)
{
    gw_shdict_t *d = gw_shdict_create("lru", 1024);
    char key[8];
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        int evicted = -1;
        CHECK_INT(gw_shdict_set(d, key, 3, GW_SHDICT_NUMBER, i, NULL, 0, 0, 0, &evicted), GW_OK);
        CHECK_INT(evicted, 0);
    }
    CHECK_INT(gw_shdict_count(d), 16);
    CHECK_INT(gw_shdict_free_space(d), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        CHECK(num_of(d, key) == i); /* k00..k03 become the most recently used */
    }
    return d;
}

static void test_lru_eviction(void)
{
    gw_shdict_t *d = full_dict();
    char key[8];
    for (int i = 16; i < 20; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        int evicted = -1;
        CHECK_INT(gw_shdict_set(d, key, 3, GW_SHDICT_NUMBER, i, NULL, 0, 0, 0, &evicted), GW_OK);
        CHECK_INT(evicted, 1);
    }
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        bool gone = i >= 4 && i < 8;
        CHECK_INT(type_of(d, key), gone ? GW_SHDICT_NIL : GW_SHDICT_NUMBER);
    }
    CHECK_INT(gw_shdict_count(d), 16);
    /* the reads above used k00 first, then k01; incr counts as a use too */
    CHECK_INT(gw_shdict_incr(d, KEY("k00"), 1, false, 0, 0, NULL), GW_OK);
    CHECK_INT(set_num(d, "k20", 0, 0, 0), GW_OK);
    CHECK_INT(type_of(d, "k00"), GW_SHDICT_NUMBER);
    CHECK_INT(type_of(d, "k01"), GW_SHDICT_NIL);
    gw_shdict_destroy(d);
}

static void test_evict_for_bigger_value(void)
{
    gw_shdict_t *d = full_dict();
    char val[150];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    /* a 256-byte block: k04..k07 are the least recently used and adjacent */
    int evicted = -1;
    CHECK_INT(gw_shdict_set(d, KEY("big"), GW_SHDICT_STRING, 0, val, strlen(val), 0, 0, &evicted),
              GW_OK);
    CHECK_INT(evicted, 4);
    CHECK_STR(str_of(d, "big"), val);
    CHECK_INT(type_of(d, "k03"), GW_SHDICT_NUMBER);
    CHECK_INT(type_of(d, "k07"), GW_SHDICT_NIL);
    CHECK_INT(type_of(d, "k08"), GW_SHDICT_NUMBER);
    CHECK_INT(gw_shdict_count(d), 13);
    gw_shdict_destroy(d);
}

/*
 * Room is made by freeing expired entries near the LRU tail before any live
 * entry is evicted.
 */
static void test_expired_make_room_first(void)
{
    gw_shdict_t *d = gw_shdict_create("expire-room", 1024);
    char key[8];
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_INT(set_num(d, key, i, i < 8 ? 0.05 : 0, 0), GW_OK);
    }
    sleep_s(0.1);
    int evicted = -1;
    for (int i = 16; i < 24; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_INT(gw_shdict_set(d, key, 3, GW_SHDICT_NUMBER, i, NULL, 0, 0, 0, &evicted), GW_OK);
        CHECK_INT(evicted, 0);
    }
    for (int i = 0; i < 24; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_INT(type_of(d, key), i >= 8 ? GW_SHDICT_NUMBER : GW_SHDICT_NIL);
    }
    /* no expired entry left: the least recently used live one goes */
    CHECK_INT(gw_shdict_set(d, KEY("k24"), GW_SHDICT_NUMBER, 24, NULL, 0, 0, 0, &evicted), GW_OK);
    CHECK_INT(evicted, 1);
    CHECK_INT(type_of(d, "k08"), GW_SHDICT_NIL);
    gw_shdict_destroy(d);
}

static void test_too_large(void)
{
    /* 3 x 64 KiB: blocks of 128 KiB and 64 KiB */
    gw_shdict_t *d = gw_shdict_create("large", 3 * 65536);
    CHECK_INT(gw_shdict_free_space(d), 3 * 65536);
    char *val = calloc(1, 3 * 65536 + 1);
    CHECK_INT(set_num(d, "keep", 1, 0, 0), GW_OK);
    int evicted = -1;
    CHECK_INT(gw_shdict_set(d, KEY("v"), GW_SHDICT_STRING, 0, val, 3 * 65536 + 1, 0, 0, &evicted),
              GW_ERROR);
    CHECK_INT(evicted, 0);
    CHECK_INT(gw_shdict_set(d, KEY("v"), GW_SHDICT_STRING, 0, val, 131072, 0, 0, NULL), GW_ERROR);
    CHECK_INT(gw_shdict_set(d, KEY("v"), GW_SHDICT_STRING, 0, val, SIZE_MAX, 0, 0, NULL), GW_ERROR);
    CHECK(num_of(d, "keep") == 1);
    /* the largest block takes a value that leaves room for the header */
    CHECK_INT(gw_shdict_set(d, KEY("v"), GW_SHDICT_STRING, 0, val, 131072 - 57, 0, 0, &evicted),
              GW_OK);
    CHECK_INT(evicted, 0);
    CHECK_INT(type_of(d, "keep"), GW_SHDICT_NUMBER);
    /* a second one evicts the first ("keep" was used since and stays) */
    CHECK_INT(gw_shdict_set(d, KEY("w"), GW_SHDICT_STRING, 0, val, 131072 - 57, 0, 0, &evicted),
              GW_OK);
    CHECK_INT(evicted, 1);
    CHECK_INT(type_of(d, "v"), GW_SHDICT_NIL);
    CHECK_INT(type_of(d, "w"), GW_SHDICT_STRING);
    CHECK(num_of(d, "keep") == 1);
    /* with "keep" least recently used, it goes first although its block does
       not help, then "w" */
    CHECK_INT(type_of(d, "w"), GW_SHDICT_STRING);
    CHECK_INT(gw_shdict_set(d, KEY("x"), GW_SHDICT_STRING, 0, val, 131072 - 57, 0, 0, &evicted),
              GW_OK);
    CHECK_INT(evicted, 2);
    CHECK_INT(gw_shdict_count(d), 1);
    CHECK_INT(gw_shdict_free_space(d), 65536);
    free(val);
    gw_shdict_destroy(d);
}

static void test_again_small_buffer(void)
{
    gw_shdict_t *d = gw_shdict_create("again", 4096);
    char val[100];
    memset(val, 'a', sizeof val);
    CHECK_INT(gw_shdict_set(d, KEY("s"), GW_SHDICT_STRING, 0, val, sizeof val, 0, 0, NULL), GW_OK);
    char buf[100];
    int type = -1;
    size_t len = 0;
    CHECK_INT(gw_shdict_get(d, KEY("s"), &type, NULL, buf, 10, &len, NULL), GW_AGAIN);
    CHECK_INT(type, GW_SHDICT_STRING);
    CHECK_INT(len, 100);
    CHECK_INT(gw_shdict_get(d, KEY("s"), &type, NULL, NULL, 0, &len, NULL), GW_AGAIN);
    CHECK_INT(len, 100);
    CHECK_INT(gw_shdict_get(d, KEY("s"), &type, NULL, buf, len, &len, NULL), GW_OK);
    CHECK(memcmp(buf, val, sizeof val) == 0);
    gw_shdict_destroy(d);
}

static void test_flush(void)
{
    gw_shdict_t *d = gw_shdict_create("flush", 4096);
    for (int i = 0; i < 5; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_INT(set_num(d, key, i, i < 3 ? 0.05 : 0, 0), GW_OK);
    }
    sleep_s(0.1);
    CHECK_INT(gw_shdict_count(d), 5);
    CHECK_INT(gw_shdict_flush_expired(d, 1), 1);
    CHECK_INT(gw_shdict_flush_expired(d, 0), 2);
    CHECK_INT(gw_shdict_count(d), 2);
    CHECK_INT(gw_shdict_flush_expired(d, 0), 0);
    gw_shdict_flush_all(d);
    CHECK_INT(gw_shdict_count(d), 0);
    CHECK_INT(gw_shdict_free_space(d), 4096);
    CHECK_INT(type_of(d, "k4"), GW_SHDICT_NIL);
    CHECK_INT(set_num(d, "k4", 4, 0, 0), GW_OK);
    CHECK(num_of(d, "k4") == 4);
    gw_shdict_destroy(d);
}

static void test_registry(void)
{
    gw_shdict_t *a = gw_shdict_create("reg-a", 4096);
    gw_shdict_t *b = gw_shdict_create("reg-b", 4096);
    gw_shdict_t *a2 = gw_shdict_create("reg-a", 4096);
    CHECK(gw_shdict_find("reg-a") == NULL);
    CHECK_INT(gw_shdict_register(a), GW_OK);
    CHECK_INT(gw_shdict_register(a), GW_OK);
    CHECK_INT(gw_shdict_register(b), GW_OK);
    CHECK_INT(gw_shdict_register(a2), GW_DECLINED);
    CHECK_INT(gw_shdict_register(NULL), GW_ERROR);
    CHECK(gw_shdict_find("reg-a") == a);
    CHECK(gw_shdict_find("reg-b") == b);
    CHECK(gw_shdict_find("reg-c") == NULL);
    gw_shdict_destroy(a);
    CHECK(gw_shdict_find("reg-a") == NULL);
    CHECK(gw_shdict_find("reg-b") == b);
    CHECK_INT(gw_shdict_register(a2), GW_OK);
    CHECK(gw_shdict_find("reg-a") == a2);
    gw_shdict_destroy(b);
    gw_shdict_destroy(a2);
    CHECK(gw_shdict_find("reg-b") == NULL);
}

/* Random sets, deletes and reads checked against a plain array. */
static void test_random_against_model(void)
{
    enum { NKEYS = 300, OPS = 20000 };
    static int model_len[NKEYS]; /* -1: absent */
    static char model_fill[NKEYS];
    static char val[2100];
    gw_shdict_t *d = gw_shdict_create("random", 4 << 20);
    for (int i = 0; i < NKEYS; i++)
        model_len[i] = -1;
    unsigned rnd = 12345;
    for (int op = 0; op < OPS; op++) {
        rnd = rnd * 1103515245u + 12345u;
        int i = (int)((rnd >> 8) % NKEYS);
        char key[16];
        snprintf(key, sizeof key, "r%d", i);
        unsigned what = (rnd >> 20) % 4;
        if (what == 0) {
            CHECK_INT(gw_shdict_delete(d, KEY(key)), model_len[i] >= 0 ? GW_OK : GW_DECLINED);
            model_len[i] = -1;
        } else if (what == 1) {
            int len = (int)((rnd >> 4) % sizeof val);
            char fill = (char)('a' + op % 26);
            memset(val, fill, (size_t)len);
            int evicted = -1;
            CHECK_INT(
                gw_shdict_set(d, KEY(key), GW_SHDICT_STRING, 0, val, (size_t)len, 0, 0, &evicted),
                GW_OK);
            CHECK_INT(evicted, 0);
            model_len[i] = len;
            model_fill[i] = fill;
        } else {
            int type = -1;
            size_t len = 0;
            CHECK_INT(gw_shdict_get(d, KEY(key), &type, NULL, val, sizeof val, &len, NULL), GW_OK);
            CHECK_INT(type, model_len[i] >= 0 ? GW_SHDICT_STRING : GW_SHDICT_NIL);
            if (model_len[i] >= 0 && len > 0)
                CHECK(len == (size_t)model_len[i] && val[0] == model_fill[i] &&
                      val[len - 1] == model_fill[i]);
        }
    }
    size_t live = 0;
    for (int i = 0; i < NKEYS; i++)
        live += model_len[i] >= 0;
    CHECK_INT(gw_shdict_count(d), live);
    for (int i = 0; i < NKEYS; i++) {
        char key[16];
        snprintf(key, sizeof key, "r%d", i);
        gw_shdict_delete(d, KEY(key));
    }
    CHECK_INT(gw_shdict_count(d), 0);
    CHECK_INT(gw_shdict_free_space(d), 4 << 20); /* every block merged back */
    gw_shdict_destroy(d);
}

static pid_t spawn(void (*fn)(gw_shdict_t *), gw_shdict_t *d)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn(d);
        _exit(0);
    }
    CHECK(pid > 0);
    return pid;
}

static void incr_10000(gw_shdict_t *d)
{
    for (int i = 0; i < 10000; i++)
        if (gw_shdict_incr(d, KEY("counter"), 1, true, 0, 0, NULL) != GW_OK)
            _exit(1);
}

static void test_cross_process_incr(void)
{
    gw_shdict_t *d = gw_shdict_create("counters", 64 * 1024);
    pid_t a = spawn(incr_10000, d);
    pid_t b = spawn(incr_10000, d);
    int sa = -1, sb = -1;
    CHECK(waitpid(a, &sa, 0) == a);
    CHECK(waitpid(b, &sb, 0) == b);
    CHECK(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    CHECK(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    CHECK(num_of(d, "counter") == 20000);
    gw_shdict_destroy(d);
}

/* Store ~1 MiB values under 8 keys of this process, forever. */
static void write_forever(gw_shdict_t *d)
{
    char key[32];
    for (unsigned i = 0;; i++) {
        snprintf(key, sizeof key, "w%d-%u", (int)getpid(), i % 8);
        gw_shdict_set(d, KEY(key), GW_SHDICT_STRING, 0, big, sizeof big, 0, 0, NULL);
        gw_shdict_incr(d, KEY("writes"), 1, true, 0, 0, NULL);
    }
}

static void read_forever(gw_shdict_t *d)
{
    for (;;)
        gw_shdict_get(d, KEY("big"), NULL, NULL, big_out, sizeof big_out, NULL, NULL);
}

/* Run two children of fn for `ms` milliseconds, then SIGKILL them. */
static void run_and_kill(void (*fn)(gw_shdict_t *), gw_shdict_t *d, int ms)
{
    pid_t pids[2];
    for (int i = 0; i < 2; i++)
        pids[i] = spawn(fn, d);
    sleep_s(ms / 1000.0);
    for (int i = 0; i < 2; i++) {
        int st = 0;
        kill(pids[i], SIGKILL);
        CHECK(waitpid(pids[i], &st, 0) == pids[i]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
}

/* The contents of a file in a malloc'd string. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *s = calloc(1, 1 << 16);
    size_t n = fread(s, 1, (1 << 16) - 1, f);
    s[n] = '\0';
    fclose(f);
    return s;
}

/*
 * Writers hold the lock nearly all the time (copying 1 MiB under it), so
 * killing them leaves it owned by a dead process. The parent must get it
 * back (a deadlock ends the test by SIGALRM) and find a working dict.
 */
static void test_killed_while_writing(void)
{
    char path[] = "/tmp/test_shdict_log_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    gw_log_level_t level = gw_log_level;
    gw_log_reopen(path, GW_LOG_WARN);
    memset(big, 'B', sizeof big);
    gw_shdict_t *d = gw_shdict_create("crash", 8 << 20);
    alarm(60);
    for (int round = 0; round < 5; round++) {
        run_and_kill(write_forever, d, 10 + 10 * round);
        CHECK_INT(set_num(d, "after", round, 0, 0), GW_OK);
        CHECK(num_of(d, "after") == round);
    }
    alarm(0);
    gw_log_reopen("stderr", level);

    /* whatever survived is well formed, and the heap is whole once emptied */
    gw_shdict_flush_expired(d, 0);
    CHECK(gw_shdict_count(d) <= 10);
    gw_shdict_flush_all(d);
    CHECK_INT(gw_shdict_free_space(d), 8 << 20);
    for (int i = 0; i < 8; i++) {
        char key[8];
        snprintf(key, sizeof key, "b%d", i);
        CHECK_INT(gw_shdict_set(d, KEY(key), GW_SHDICT_STRING, 0, big, sizeof big, 0, 0, NULL),
                  GW_OK);
    }
    CHECK_INT(gw_shdict_count(d), 8);
    char *log = slurp(path);
    CHECK(log && strstr(log, "died holding the lock"));
    free(log);
    unlink(path);
    gw_shdict_destroy(d);
}

/*
 * Readers killed while copying a value out hold the lock without changing
 * the dict: the value must survive.
 */
static void test_killed_while_reading(void)
{
    gw_log_level_t level = gw_log_level;
    gw_log_level = GW_LOG_ERROR;
    memset(big, 'R', sizeof big);
    gw_shdict_t *d = gw_shdict_create("crash-read", 4 << 20);
    CHECK_INT(gw_shdict_set(d, KEY("big"), GW_SHDICT_STRING, 0, big, sizeof big, 0, 0, NULL),
              GW_OK);
    alarm(60);
    for (int round = 0; round < 3; round++)
        run_and_kill(read_forever, d, 10 + 10 * round);
    size_t len = 0;
    int type = -1;
    memset(big_out, 0, sizeof big_out);
    CHECK_INT(gw_shdict_get(d, KEY("big"), &type, NULL, big_out, sizeof big_out, &len, NULL),
              GW_OK);
    alarm(0);
    gw_log_level = level;
    CHECK_INT(type, GW_SHDICT_STRING);
    CHECK_INT(len, sizeof big);
    CHECK(memcmp(big_out, big, sizeof big) == 0);
    gw_shdict_destroy(d);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_types),
        GW_TEST(test_missing_and_bad_args),
        GW_TEST(test_add_replace),
        GW_TEST(test_incr),
        GW_TEST(test_ttl),
        GW_TEST(test_delete),
        GW_TEST(test_overwrite_sizes),
        GW_TEST(test_lru_eviction),
        GW_TEST(test_evict_for_bigger_value),
        GW_TEST(test_expired_make_room_first),
        GW_TEST(test_too_large),
        GW_TEST(test_again_small_buffer),
        GW_TEST(test_flush),
        GW_TEST(test_registry),
        GW_TEST(test_random_against_model),
        GW_TEST(test_cross_process_incr),
        GW_TEST(test_killed_while_writing),
        GW_TEST(test_killed_while_reading),
    };
    return GW_TEST_RUN(cases);
}
