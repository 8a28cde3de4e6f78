/* Unit tests for gw_balancer: policies, health and the tried bitmap. */
#include "gw_balancer.h"
#include "gw_test.h"

#include <stdio.h>
#include <stdlib.h>

#define NOKEY ((gw_str_t){"", 0})

static gw_upstream_conf_t make_conf(gw_target_conf_t *targets, size_t n, gw_balance_t balance)
{
    gw_upstream_conf_t c;
    memset(&c, 0, sizeof c);
    c.name = "test";
    c.targets = targets;
    c.ntargets = n;
    c.balance = balance;
    c.connect_timeout = 5;
    c.retries = 1;
    c.passive.down_for = 10;
    return c;
}

static gw_str_t str(const char *s)
{
    return (gw_str_t){s, strlen(s)};
}

static void test_rr_smooth_weighted(void)
{
    gw_target_conf_t t[] = {{"a", 1, 5, 0}, {"b", 2, 1, 0}, {"c", 3, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 3, GW_BALANCE_ROUND_ROBIN);
    gw_balancer_t *b = gw_balancer_new(&c);
    const char *want = "aabacaa";
    char got[2 * 7 + 1];
    for (int i = 0; i < 14; i++)
        got[i] = (char)('a' + gw_balancer_pick(b, NOKEY, 0, 0));
    got[14] = '\0';
    CHECK(strncmp(got, want, 7) == 0);
    CHECK(strncmp(got + 7, want, 7) == 0);
    CHECK_INT(gw_balancer_ntargets(b), 3);
    gw_balancer_free(b);
}

static void test_rr_equal_alternates(void)
{
    gw_target_conf_t t[] = {{"a", 1, 1, 0}, {"b", 2, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 2, GW_BALANCE_ROUND_ROBIN);
    gw_balancer_t *b = gw_balancer_new(&c);
    int prev = gw_balancer_pick(b, NOKEY, 0, 0);
    for (int i = 0; i < 10; i++) {
        int cur = gw_balancer_pick(b, NOKEY, 0, 0);
        CHECK(cur == 1 - prev);
        prev = cur;
    }
    gw_balancer_free(b);
}

static void test_no_targets_and_one(void)
{
    gw_upstream_conf_t c = make_conf(NULL, 0, GW_BALANCE_HASH);
    gw_balancer_t *b = gw_balancer_new(&c);
    CHECK_INT(gw_balancer_pick(b, str("k"), 0, 0), -1);
    gw_balancer_free(b);

    gw_target_conf_t t[] = {{"a", 1, 1, 0}};
    c = make_conf(t, 1, GW_BALANCE_EWMA);
    b = gw_balancer_new(&c);
    gw_balancer_set_up(b, 0, false);
    CHECK_INT(gw_balancer_pick(b, NOKEY, 1, 0), 0);
    gw_balancer_free(b);
}

static void test_least_conn(void)
{
    gw_target_conf_t t[] = {{"a", 1, 1, 0}, {"b", 2, 1, 0}, {"c", 3, 2, 0}};
    gw_upstream_conf_t c = make_conf(t, 3, GW_BALANCE_LEAST_CONN);
    gw_balancer_t *b = gw_balancer_new(&c);

    /* All idle: ties spread by weighted round robin (c twice as often). */
    int count[3] = {0};
    for (int i = 0; i < 40; i++)
        count[gw_balancer_pick(b, NOKEY, 0, 0)]++;
    CHECK_INT(count[0], 10);
    CHECK_INT(count[1], 10);
    CHECK_INT(count[2], 20);

    /* Each pick is acquired: load follows weight. */
    for (int i = 0; i < 8; i++)
        gw_balancer_acquire(b, gw_balancer_pick(b, NOKEY, 0, 0));
    /* a: 2, b: 2, c: 4 in flight; 2/1 == 4/2, all tied. */
    gw_balancer_release(b, 0);
    gw_balancer_release(b, 0);
    CHECK_INT(gw_balancer_pick(b, NOKEY, 0, 0), 0);
    gw_balancer_acquire(b, 0);
    CHECK_INT(gw_balancer_pick(b, NOKEY, 0, 0), 0);
    gw_balancer_acquire(b, 0);
    /* a: 2, b: 2, c: 4 again; take three off c: c has 1/2, the least. */
    gw_balancer_release(b, 2);
    gw_balancer_release(b, 2);
    gw_balancer_release(b, 2);
    CHECK_INT(gw_balancer_pick(b, NOKEY, 0, 0), 2);
    /* The least loaded target is skipped when tried. */
    int p = gw_balancer_pick(b, NOKEY, 1u << 2, 0);
    CHECK(p == 0 || p == 1);
    /* Releasing below zero is ignored. */
    for (int i = 0; i < 10; i++)
        gw_balancer_release(b, 1);
    CHECK_INT(gw_balancer_pick(b, NOKEY, 0, 0), 1);
    gw_balancer_free(b);
}

/* 4 targets 10.0.0.1..4:80, optionally without one of them. */
static size_t make_four(gw_target_conf_t *t, char hosts[][16], int skip)
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (i == skip)
            continue;
        snprintf(hosts[n], 16, "10.0.0.%d", i + 1);
        t[n] = (gw_target_conf_t){hosts[n], 80, 1, 0};
        n++;
    }
    return n;
}

static void test_hash_stable_and_spread(void)
{
    char hosts[4][16];
    gw_target_conf_t t[4];
    size_t n = make_four(t, hosts, -1);
    gw_upstream_conf_t c = make_conf(t, n, GW_BALANCE_HASH);
    gw_balancer_t *b = gw_balancer_new(&c);
    gw_balancer_t *b2 = gw_balancer_new(&c);

    int count[4] = {0};
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "user-%d", i);
        int p = gw_balancer_pick(b, str(key), 0, 0);
        CHECK(p == gw_balancer_pick(b, str(key), 0, 0));
        CHECK(p == gw_balancer_pick(b2, str(key), 0, 0));
        count[p]++;
    }
    for (int i = 0; i < 4; i++)
        CHECK(count[i] > 1800 && count[i] < 3200);

    /* Down or tried: the next target on the ring, the same for every pick. */
    int first = gw_balancer_pick(b, str("user-1"), 0, 0);
    int next = gw_balancer_pick(b, str("user-1"), 1ull << first, 0);
    CHECK(next != first);
    gw_balancer_set_up(b, first, false);
    CHECK_INT(gw_balancer_pick(b, str("user-1"), 0, 0), next);
    gw_balancer_set_up(b, first, true);
    CHECK_INT(gw_balancer_pick(b, str("user-1"), 0, 0), first);

    /* Empty key: round robin over all four. */
    int seen[4] = {0};
    for (int i = 0; i < 4; i++)
        seen[gw_balancer_pick(b, NOKEY, 0, 0)]++;
    for (int i = 0; i < 4; i++)
        CHECK_INT(seen[i], 1);
    gw_balancer_free(b);
    gw_balancer_free(b2);
}

static void test_hash_remove_target(void)
{
    char hosts4[4][16], hosts3[4][16];
    gw_target_conf_t t4[4], t3[4];
    size_t n4 = make_four(t4, hosts4, -1);
    size_t n3 = make_four(t3, hosts3, 2);
    gw_upstream_conf_t c4 = make_conf(t4, n4, GW_BALANCE_HASH);
    gw_upstream_conf_t c3 = make_conf(t3, n3, GW_BALANCE_HASH);
    gw_balancer_t *b4 = gw_balancer_new(&c4);
    gw_balancer_t *b3 = gw_balancer_new(&c3);

    int moved = 0, moved_elsewhere = 0;
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "10.1.%d.%d", i / 256, i % 256);
        const char *h4 = t4[gw_balancer_pick(b4, str(key), 0, 0)].host;
        const char *h3 = t3[gw_balancer_pick(b3, str(key), 0, 0)].host;
        if (strcmp(h4, h3) != 0) {
            moved++;
            if (strcmp(h4, "10.0.0.3") != 0)
                moved_elsewhere++;
        }
    }
    /* Only the removed target's keys move: about a quarter. */
    CHECK(moved > 1800 && moved < 3200);
    CHECK_INT(moved_elsewhere, 0);
    gw_balancer_free(b4);
    gw_balancer_free(b3);
}

static void test_ewma_prefers_fast(void)
{
    gw_target_conf_t t[] = {{"fast", 1, 1, 0}, {"slow", 2, 1, 0}, {"mid", 3, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 3, GW_BALANCE_EWMA);
    gw_balancer_t *b = gw_balancer_new(&c);

    /* Untried targets score 0: every target gets traffic at first. */
    int seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[gw_balancer_pick(b, NOKEY, 0, 0)]++;
    for (int i = 0; i < 3; i++)
        CHECK(seen[i] > 0);

    double now = 100;
    for (int i = 0; i < 20; i++, now += 0.1) {
        gw_balancer_report(b, 0, true, 0.010, now);
        gw_balancer_report(b, 1, true, 0.500, now);
        gw_balancer_report(b, 2, true, 0.100, now);
    }
    int count[3] = {0};
    for (int i = 0; i < 300; i++)
        count[gw_balancer_pick(b, NOKEY, 0, now)]++;
    /* P2C: fast wins whenever drawn (2/3 of pairs); slow never wins. */
    CHECK(count[0] > 150);
    CHECK_INT(count[1], 0);
    CHECK(count[2] > 0);

    /* In-flight requests weigh in: a busy fast target loses to mid. */
    for (int i = 0; i < 20; i++)
        gw_balancer_acquire(b, 0);
    memset(count, 0, sizeof count);
    for (int i = 0; i < 300; i++)
        count[gw_balancer_pick(b, NOKEY, 0, now)]++;
    CHECK(count[2] > count[0]);
    CHECK_INT(count[1], 0);
    for (int i = 0; i < 20; i++)
        gw_balancer_release(b, 0);

    /* A failure counts as at least the connect timeout. */
    gw_balancer_report(b, 0, false, 0.001, now);
    for (int i = 0; i < 100; i++)
        CHECK(gw_balancer_pick(b, NOKEY, 0, now) != 0);
    gw_balancer_free(b);
}

static void test_passive_down_and_back(void)
{
    gw_target_conf_t t[] = {{"a", 1, 1, 0}, {"b", 2, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 2, GW_BALANCE_ROUND_ROBIN);
    c.passive.failures = 3;
    c.passive.down_for = 10;
    gw_balancer_t *b = gw_balancer_new(&c);
    double now = 1000;

    /* A success resets the count. */
    gw_balancer_report(b, 0, false, 0, now);
    gw_balancer_report(b, 0, false, 0, now);
    gw_balancer_report(b, 0, true, 0, now);
    gw_balancer_report(b, 0, false, 0, now);
    gw_balancer_report(b, 0, false, 0, now);
    CHECK(gw_balancer_is_up(b, 0, now));
    gw_balancer_report(b, 0, false, 0, now);
    CHECK(!gw_balancer_is_up(b, 0, now));
    CHECK(gw_balancer_is_up(b, 1, now));
    for (int i = 0; i < 10; i++)
        CHECK_INT(gw_balancer_pick(b, NOKEY, 0, now + 5), 1);
    CHECK(!gw_balancer_is_up(b, 0, now + 9.9));
    CHECK(gw_balancer_is_up(b, 0, now + 10));
    int seen0 = 0;
    for (int i = 0; i < 4; i++)
        seen0 += gw_balancer_pick(b, NOKEY, 0, now + 10) == 0;
    CHECK_INT(seen0, 2);
    gw_balancer_free(b);

    /* failures == 0 disables passive marking. */
    c.passive.failures = 0;
    b = gw_balancer_new(&c);
    for (int i = 0; i < 100; i++)
        gw_balancer_report(b, 0, false, 0, now);
    CHECK(gw_balancer_is_up(b, 0, now));
    CHECK(!gw_balancer_is_up(b, 5, now));
    gw_balancer_free(b);
}

static void test_active_set_up(void)
{
    gw_target_conf_t t[] = {{"a", 1, 1, 0}, {"b", 2, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 2, GW_BALANCE_LEAST_CONN);
    gw_balancer_t *b = gw_balancer_new(&c);
    gw_balancer_set_up(b, 1, false);
    CHECK(!gw_balancer_is_up(b, 1, 0));
    for (int i = 0; i < 5; i++)
        CHECK_INT(gw_balancer_pick(b, NOKEY, 0, 0), 0);
    gw_balancer_set_up(b, 1, true);
    CHECK(gw_balancer_is_up(b, 1, 0));
    CHECK_INT(gw_balancer_pick(b, NOKEY, 1, 0), 1);
    gw_balancer_free(b);
}

static void test_tried_bitmap(void)
{
    gw_target_conf_t t[] = {{"a", 1, 1, 0}, {"b", 2, 1, 0}, {"c", 3, 1, 0}};
    gw_balance_t policies[] = {GW_BALANCE_ROUND_ROBIN, GW_BALANCE_LEAST_CONN, GW_BALANCE_HASH,
                               GW_BALANCE_EWMA};
    for (size_t k = 0; k < GW_ARRAY_LEN(policies); k++) {
        gw_upstream_conf_t c = make_conf(t, 3, policies[k]);
        gw_balancer_t *b = gw_balancer_new(&c);
        for (int i = 0; i < 20; i++) {
            CHECK_INT(gw_balancer_pick(b, str("key"), 0x3, 0), 2);
            CHECK_INT(gw_balancer_pick(b, str("key"), 0x5, 0), 1);
            int p = gw_balancer_pick(b, NOKEY, 0x1, 0);
            CHECK(p == 1 || p == 2);
        }
        /* The only untried target is down: an up target, though tried. */
        gw_balancer_set_up(b, 2, false);
        for (int i = 0; i < 20; i++) {
            int p = gw_balancer_pick(b, str("key"), 0x3, 0);
            CHECK(p == 0 || p == 1);
        }
        /* Everything tried: still picks an up one. */
        for (int i = 0; i < 20; i++) {
            int p = gw_balancer_pick(b, str("key"), 0x7, 0);
            CHECK(p == 0 || p == 1);
        }
        gw_balancer_free(b);
    }
}

static void test_all_down_still_picks(void)
{
    gw_target_conf_t t[] = {{"a", 1, 1, 0}, {"b", 2, 1, 0}, {"c", 3, 1, 0}};
    gw_balance_t policies[] = {GW_BALANCE_ROUND_ROBIN, GW_BALANCE_LEAST_CONN, GW_BALANCE_HASH,
                               GW_BALANCE_EWMA};
    for (size_t k = 0; k < GW_ARRAY_LEN(policies); k++) {
        gw_upstream_conf_t c = make_conf(t, 3, policies[k]);
        c.passive.failures = 1;
        gw_balancer_t *b = gw_balancer_new(&c);
        gw_balancer_set_up(b, 0, false);
        gw_balancer_set_up(b, 1, false);
        gw_balancer_report(b, 2, false, 0, 50);
        int seen[3] = {0};
        for (int i = 0; i < 30; i++) {
            int p = gw_balancer_pick(b, str(i % 2 ? "k1" : "k2"), 0, 51);
            CHECK(p >= 0 && p < 3);
            if (p >= 0 && p < 3)
                seen[p]++;
            /* Prefers an untried target while there is one. */
            CHECK_INT(gw_balancer_pick(b, str("k3"), 0x6, 51), 0);
        }
        CHECK_INT(seen[0] + seen[1] + seen[2], 30);
        CHECK(gw_balancer_pick(b, NOKEY, 0x7, 51) >= 0);
        gw_balancer_free(b);
    }
}

static void test_many_targets(void)
{
    enum { N = 100 };
    gw_target_conf_t t[N];
    char hosts[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(hosts[i], sizeof hosts[i], "10.2.0.%d", i);
        t[i] = (gw_target_conf_t){hosts[i], 80, 1, 0};
    }
    gw_upstream_conf_t c = make_conf(t, N, GW_BALANCE_ROUND_ROBIN);
    gw_balancer_t *b = gw_balancer_new(&c);
    int seen[N] = {0};
    for (int i = 0; i < N; i++)
        seen[gw_balancer_pick(b, NOKEY, 0, 0)]++;
    for (int i = 0; i < N; i++)
        CHECK_INT(seen[i], 1);
    /* All 64 bitmap targets tried: picks come from beyond the bitmap. */
    for (int i = 0; i < N; i++)
        CHECK(gw_balancer_pick(b, NOKEY, UINT64_MAX, 0) >= 64);
    gw_balancer_free(b);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_rr_smooth_weighted),     GW_TEST(test_rr_equal_alternates),
        GW_TEST(test_no_targets_and_one),     GW_TEST(test_least_conn),
        GW_TEST(test_hash_stable_and_spread), GW_TEST(test_hash_remove_target),
        GW_TEST(test_ewma_prefers_fast),      GW_TEST(test_passive_down_and_back),
        GW_TEST(test_active_set_up),          GW_TEST(test_tried_bitmap),
        GW_TEST(test_all_down_still_picks),   GW_TEST(test_many_targets),
    };
    return GW_TEST_RUN(cases);
}
