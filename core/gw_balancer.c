/*
 * Load balancing and per-target health declared in gw_balancer.h.
 *
 * One balancer per upstream per worker, used from that worker's thread
 * only. gw_balancer_pick runs once per request (and per retry): it never
 * allocates and is O(targets), plus a binary search for the hash policy.
 *
 * The `tried` bitmap has 64 bits, so it covers targets 0..63 only: with
 * more targets, targets 64 and up always count as untried. Everything else
 * works for any number of targets.
 */
#include "gw_balancer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Virtual points on the hash ring per unit of weight (as nginx). */
#define GW_RING_POINTS 160

/* Time constant of the EWMA latency decay, in seconds. */
#define GW_EWMA_TAU 10.0

typedef struct {
    int weight;
    int current;       /* smooth weighted round robin state */
    int active;        /* requests in flight (acquire/release) */
    int fails;         /* consecutive failed reports */
    double down_until; /* passively down until this time */
    bool active_down;  /* marked down by active health checks */
    bool sampled;      /* has at least one latency sample */
    double ewma;       /* peak-EWMA latency, seconds */
    double ewma_at;    /* time of the last update of ewma */
} gw_peer_t;

typedef struct {
    uint32_t hash;
    uint32_t target;
} gw_ring_point_t;

struct gw_balancer_s {
    const gw_upstream_conf_t *conf;
    gw_peer_t *peers;
    size_t n;
    gw_ring_point_t *ring; /* hash policy only, sorted by hash */
    size_t nring;
    uint64_t rng; /* xorshift64 state, never 0 */
};

/*
 * Candidate levels, tried in order until one has a target:
 * up and untried, then up, then untried (all down), then any.
 */
enum { GW_LEVEL_UP_UNTRIED = 0, GW_LEVEL_UP, GW_LEVEL_UNTRIED, GW_LEVEL_ANY };

#define GW_FNV_OFFSET 2166136261u
#define GW_FNV_PRIME  16777619u

static uint32_t gw_fnv_update(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= GW_FNV_PRIME;
    }
    return h;
}

/* murmur3's finalizer: spreads FNV's weak high bits over the whole word. */
static uint32_t gw_hash_mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t gw_hash_bytes(const void *data, size_t len)
{
    return gw_hash_mix(gw_fnv_update(GW_FNV_OFFSET, data, len));
}

/* Hash of the ring point "host:port#n" of a target. */
static uint32_t gw_point_hash(const gw_target_conf_t *t, unsigned n)
{
    char tail[32];
    int len = snprintf(tail, sizeof tail, ":%u#%u", (unsigned)t->port, n);
    uint32_t h = GW_FNV_OFFSET;
    if (t->host)
        h = gw_fnv_update(h, t->host, strlen(t->host));
    h = gw_fnv_update(h, tail, (size_t)len);
    return gw_hash_mix(h);
}

static int gw_ring_cmp(const void *a, const void *b)
{
    const gw_ring_point_t *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->target < y->target ? -1 : (x->target > y->target);
}

/* Build the consistent hashing ring: GW_RING_POINTS points per weight unit. */
static void gw_ring_build(gw_balancer_t *b)
{
    size_t total = 0;
    for (size_t i = 0; i < b->n; i++)
        total += (size_t)b->peers[i].weight * GW_RING_POINTS;
    b->ring = gw_xmalloc(total * sizeof *b->ring);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        unsigned points = (unsigned)b->peers[i].weight * GW_RING_POINTS;
        for (unsigned p = 0; p < points; p++) {
            b->ring[k].hash = gw_point_hash(&b->conf->targets[i], p);
            b->ring[k].target = (uint32_t)i;
            k++;
        }
    }
    qsort(b->ring, total, sizeof *b->ring, gw_ring_cmp);
    b->nring = total;
}

gw_balancer_t *gw_balancer_new(const gw_upstream_conf_t *conf)
{
    gw_balancer_t *b = gw_xcalloc(1, sizeof *b);
    b->conf = conf;
    b->n = conf->ntargets;
    b->peers = gw_xcalloc(b->n ? b->n : 1, sizeof *b->peers);
    for (size_t i = 0; i < b->n; i++)
        b->peers[i].weight = conf->targets[i].weight > 0 ? conf->targets[i].weight : 1;
    if (conf->balance == GW_BALANCE_HASH && b->n > 0)
        gw_ring_build(b);
    const char *name = conf->name ? conf->name : "";
    b->rng = ((uint64_t)gw_hash_bytes(name, strlen(name)) << 32) | 0x9e3779b9u;
    return b;
}

void gw_balancer_free(gw_balancer_t *b)
{
    if (!b)
        return;
    free(b->ring);
    free(b->peers);
    free(b);
}

size_t gw_balancer_ntargets(const gw_balancer_t *b)
{
    return b->n;
}

static bool gw_peer_up(const gw_peer_t *p, double now)
{
    return !p->active_down && now >= p->down_until;
}

bool gw_balancer_is_up(const gw_balancer_t *b, int i, double now)
{
    if (i < 0 || (size_t)i >= b->n)
        return false;
    return gw_peer_up(&b->peers[i], now);
}

static bool gw_is_tried(uint64_t tried, size_t i)
{
    return i < 64 && (tried >> i) & 1;
}

/* Whether target i is a candidate at `level` (see GW_LEVEL_*). */
static bool gw_eligible(const gw_balancer_t *b, size_t i, int level, uint64_t tried, double now)
{
    switch (level) {
    case GW_LEVEL_UP_UNTRIED:
        return gw_peer_up(&b->peers[i], now) && !gw_is_tried(tried, i);
    case GW_LEVEL_UP:
        return gw_peer_up(&b->peers[i], now);
    case GW_LEVEL_UNTRIED:
        return !gw_is_tried(tried, i);
    default:
        return true;
    }
}

/* The first level that has at least one candidate; one pass over targets. */
static int gw_pick_level(const gw_balancer_t *b, uint64_t tried, double now)
{
    bool any_up = false, any_untried = false;
    for (size_t i = 0; i < b->n; i++) {
        bool up = gw_peer_up(&b->peers[i], now);
        bool untried = !gw_is_tried(tried, i);
        if (up && untried)
            return GW_LEVEL_UP_UNTRIED;
        any_up |= up;
        any_untried |= untried;
    }
    if (any_up)
        return GW_LEVEL_UP;
    return any_untried ? GW_LEVEL_UNTRIED : GW_LEVEL_ANY;
}

/*
 * Smooth weighted round robin (nginx) among the candidates at `level`;
 * with `lc_best` >= 0, only among those whose active/weight equals that of
 * target lc_best (least_conn ties). Returns -1 when no target qualifies.
 */
static int gw_pick_rr(gw_balancer_t *b, int level, uint64_t tried, double now, int lc_best)
{
    int best = -1, total = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!gw_eligible(b, i, level, tried, now))
            continue;
        gw_peer_t *p = &b->peers[i];
        if (lc_best >= 0) {
            const gw_peer_t *q = &b->peers[lc_best];
            if ((int64_t)p->active * q->weight != (int64_t)q->active * p->weight)
                continue;
        }
        p->current += p->weight;
        total += p->weight;
        if (best < 0 || p->current > b->peers[best].current)
            best = (int)i;
    }
    if (best >= 0)
        b->peers[best].current -= total;
    return best;
}

/* Fewest active requests relative to weight; ties by round robin. */
static int gw_pick_least_conn(gw_balancer_t *b, int level, uint64_t tried, double now)
{
    int best = -1;
    for (size_t i = 0; i < b->n; i++) {
        if (!gw_eligible(b, i, level, tried, now))
            continue;
        const gw_peer_t *p = &b->peers[i];
        if (best < 0) {
            best = (int)i;
            continue;
        }
        const gw_peer_t *q = &b->peers[best];
        if ((int64_t)p->active * q->weight < (int64_t)q->active * p->weight)
            best = (int)i;
    }
    if (best < 0)
        return -1;
    return gw_pick_rr(b, level, tried, now, best);
}

/*
 * The ring point owning the key's hash, then clockwise to the first target
 * that is a candidate at `level`. Falls back to round robin on an empty key.
 */
static int gw_pick_hash(gw_balancer_t *b, gw_str_t key, int level, uint64_t tried, double now)
{
    if (key.len == 0 || b->nring == 0)
        return gw_pick_rr(b, level, tried, now, -1);
    uint32_t h = gw_hash_bytes(key.p, key.len);
    size_t lo = 0, hi = b->nring;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < b->nring; k++) {
        size_t t = b->ring[(lo + k) % b->nring].target;
        if (gw_eligible(b, t, level, tried, now))
            return (int)t;
    }
    return -1;
}

static uint64_t gw_rand(gw_balancer_t *b)
{
    uint64_t x = b->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    return x;
}

/*
 * The latency estimate as seen by the picker: decayed towards 0 for the
 * time since the last sample, so an idle target gets probed again.
 */
static double gw_ewma_estimate(const gw_peer_t *p, double now)
{
    double dt = now - p->ewma_at;
    if (dt <= 0)
        return p->ewma;
    return p->ewma * exp(-dt / GW_EWMA_TAU);
}

/* EWMA load: latency estimate times (in flight + 1), per unit of weight. */
static double gw_ewma_score(const gw_peer_t *p, double now)
{
    if (!p->sampled)
        return 0;
    return gw_ewma_estimate(p, now) * (p->active + 1) / p->weight;
}

/* The index of the k-th (from 0) candidate at `level`. */
static int gw_nth_eligible(const gw_balancer_t *b, size_t k, int level, uint64_t tried, double now)
{
    for (size_t i = 0; i < b->n; i++)
        if (gw_eligible(b, i, level, tried, now) && k-- == 0)
            return (int)i;
    return -1;
}

/* Power of two choices: the lower EWMA score of two random candidates. */
static int gw_pick_ewma(gw_balancer_t *b, int level, uint64_t tried, double now)
{
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++)
        m += gw_eligible(b, i, level, tried, now);
    if (m == 0)
        return -1;
    if (m == 1)
        return gw_nth_eligible(b, 0, level, tried, now);
    size_t r1 = gw_rand(b) % m;
    size_t r2 = gw_rand(b) % (m - 1);
    if (r2 >= r1)
        r2++;
    int a = gw_nth_eligible(b, r1, level, tried, now);
    int c = gw_nth_eligible(b, r2, level, tried, now);
    return gw_ewma_score(&b->peers[c], now) < gw_ewma_score(&b->peers[a], now) ? c : a;
}

int gw_balancer_pick(gw_balancer_t *b, gw_str_t key, uint64_t tried, double now)
{
    if (b->n == 0)
        return -1;
    if (b->n == 1)
        return 0;
    int level = gw_pick_level(b, tried, now);
    switch (b->conf->balance) {
    case GW_BALANCE_LEAST_CONN:
        return gw_pick_least_conn(b, level, tried, now);
    case GW_BALANCE_HASH:
        return gw_pick_hash(b, key, level, tried, now);
    case GW_BALANCE_EWMA:
        return gw_pick_ewma(b, level, tried, now);
    default:
        return gw_pick_rr(b, level, tried, now, -1);
    }
}

void gw_balancer_acquire(gw_balancer_t *b, int i)
{
    if (i >= 0 && (size_t)i < b->n)
        b->peers[i].active++;
}

void gw_balancer_release(gw_balancer_t *b, int i)
{
    if (i >= 0 && (size_t)i < b->n && b->peers[i].active > 0)
        b->peers[i].active--;
}

/*
 * Peak EWMA: a sample above the estimate replaces it at once; a lower one
 * is blended in with weight 1 - exp(-dt / tau), dt being the time since
 * the previous sample. A failed request counts as taking at least the
 * connect timeout, so a target that fails fast does not look fast.
 */
static void gw_ewma_update(gw_balancer_t *b, gw_peer_t *p, bool ok, double latency, double now)
{
    if (latency < 0)
        latency = 0;
    if (!ok && latency < b->conf->connect_timeout)
        latency = b->conf->connect_timeout;
    if (!p->sampled || latency > p->ewma) {
        p->ewma = latency;
    } else {
        double dt = now - p->ewma_at;
        double w = dt > 0 ? exp(-dt / GW_EWMA_TAU) : 1.0;
        p->ewma = p->ewma * w + latency * (1 - w);
    }
    p->sampled = true;
    p->ewma_at = now;
}

/*
 * Passive health, as nginx's max_fails: `failures` consecutive failed
 * reports put the target down for `down_for` seconds. The count is not
 * reset when the target goes down, so one more failure once it is back
 * puts it down again; only a successful report resets it.
 */
void gw_balancer_report(gw_balancer_t *b, int i, bool ok, double latency, double now)
{
    if (i < 0 || (size_t)i >= b->n)
        return;
    gw_peer_t *p = &b->peers[i];
    if (b->conf->balance == GW_BALANCE_EWMA)
        gw_ewma_update(b, p, ok, latency, now);
    if (ok) {
        p->fails = 0;
        return;
    }
    if (b->conf->passive.failures <= 0)
        return;
    p->fails++;
    if (p->fails >= b->conf->passive.failures)
        p->down_until = now + b->conf->passive.down_for;
}

void gw_balancer_set_up(gw_balancer_t *b, int i, bool up)
{
    if (i >= 0 && (size_t)i < b->n)
        b->peers[i].active_down = !up;
}
