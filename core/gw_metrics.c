/* Shared-memory metrics declared in gw_metrics.h. */
#include "gw_metrics.h"
#include "gw_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define GW_M_STATUSES       500 /* 100..599 */
#define GW_M_STATUS_WORDS   ((GW_M_STATUSES + 63) / 64)
#define GW_M_ROUTE_SLOTS    (GW_METRICS_MAX_ROUTES + 2) /* names, other, no route */
#define GW_M_NO_ROUTE_SLOT  (GW_METRICS_MAX_ROUTES + 1)
#define GW_M_UPSTREAM_SLOTS (GW_METRICS_MAX_UPSTREAMS + 1) /* names, other */
#define GW_M_BUCKETS        12                             /* the last one is +Inf */

static const double gw_m_bounds[GW_M_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                     0.5,   1,    2.5,   5,    10};
static const char *const gw_m_bound_names[GW_M_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};

typedef struct {
    uint64_t buckets[GW_M_BUCKETS]; /* not cumulative: one bucket per sample */
    uint64_t count;
    double sum;
} gw_m_hist_t;

/*
 * One worker's area. Small parts first; the request counters last, so a
 * worker only gets memory for the pages of the routes it serves. A bit in
 * status_bits is set once its counter is non-zero: the master reads only
 * those counters and never faults in untouched pages.
 */
typedef struct {
    int64_t active;
    int64_t tunnels;
    int64_t idle[GW_M_UPSTREAM_SLOTS];
    gw_m_hist_t latency[GW_M_UPSTREAM_SLOTS];
    uint64_t status_bits[GW_M_ROUTE_SLOTS][GW_M_STATUS_WORDS];
    uint64_t requests[GW_M_ROUTE_SLOTS][GW_M_STATUSES];
} gw_m_area_t;

/*
 * The start of the region. Names are written by the master only, then
 * published by a release store of the count; readers in other processes
 * load the count with acquire and never look past it.
 */
typedef struct {
    int max_workers;
    int64_t workers;
    _Atomic uint32_t nroutes;
    _Atomic uint32_t nupstreams;
    char routes[GW_METRICS_MAX_ROUTES][GW_METRICS_NAME_MAX];
    char upstreams[GW_METRICS_MAX_UPSTREAMS][GW_METRICS_NAME_MAX];
} gw_m_shm_t;

static gw_m_shm_t *gw_m_shm;
static size_t gw_m_map_size;
static size_t gw_m_head_size;   /* sizeof(gw_m_shm_t) rounded up to a page */
static size_t gw_m_area_stride; /* sizeof(gw_m_area_t) rounded up to a page */
static gw_m_area_t *gw_m_area;  /* this worker's area, NULL outside workers */

static gw_m_area_t *gw_m_area_of(int worker)
{
    return (gw_m_area_t *)((char *)gw_m_shm + gw_m_head_size + (size_t)worker * gw_m_area_stride);
}

int gw_metrics_init(int max_workers)
{
    if (gw_m_shm || max_workers < 1)
        return GW_ERROR;
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    gw_m_head_size = (sizeof(gw_m_shm_t) + pg - 1) / pg * pg;
    gw_m_area_stride = (sizeof(gw_m_area_t) + pg - 1) / pg * pg;
    gw_m_map_size = gw_m_head_size + (size_t)max_workers * gw_m_area_stride;

    void *p = mmap(NULL, gw_m_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_log_error("metrics: mmap of %zu bytes failed: %s", gw_m_map_size, strerror(errno));
        return GW_ERROR;
    }
    gw_m_shm = p;
    gw_m_shm->max_workers = max_workers;
    return GW_OK;
}

void gw_metrics_free(void)
{
    if (!gw_m_shm)
        return;
    munmap(gw_m_shm, gw_m_map_size);
    gw_m_shm = NULL;
    gw_m_area = NULL;
}

/* Index of name in names[0..n), or -1. */
static int gw_m_find(char (*names)[GW_METRICS_NAME_MAX], uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (names[i][0] == name[0] && strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

/*
 * Give name a slot in the table unless it has one or must use "other".
 * Returns false when the name is left to "other" for lack of room.
 */
static bool gw_m_add(char (*names)[GW_METRICS_NAME_MAX], _Atomic uint32_t *count, uint32_t max,
                     const char *name)
{
    uint32_t n = atomic_load_explicit(count, memory_order_relaxed);
    if (!name || strcmp(name, "other") == 0 || gw_m_find(names, n, name) >= 0)
        return true;
    size_t len = strlen(name);
    if (n >= max || len >= GW_METRICS_NAME_MAX)
        return false;
    memcpy(names[n], name, len + 1);
    atomic_store_explicit(count, n + 1, memory_order_release);
    return true;
}

void gw_metrics_register(const gw_config_t *cfg)
{
    if (!gw_m_shm || !cfg)
        return;
    size_t left = 0;
    const char *first = NULL;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const char *name = cfg->routes[i].name;
        if (!gw_m_add(gw_m_shm->routes, &gw_m_shm->nroutes, GW_METRICS_MAX_ROUTES, name)) {
            first = first ? first : name;
            left++;
        }
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const char *name = cfg->upstreams[i].name;
        if (!gw_m_add(gw_m_shm->upstreams, &gw_m_shm->nupstreams, GW_METRICS_MAX_UPSTREAMS, name)) {
            first = first ? first : name;
            left++;
        }
    }
    if (left)
        gw_log_warn("metrics: %zu route or upstream names are counted as \"other\" "
                    "(too many names or too long), the first: \"%.64s\"",
                    left, first);
}

int gw_metrics_route_slot(const char *name)
{
    if (!gw_m_shm || !name)
        return GW_METRICS_ROUTE_OTHER;
    uint32_t n = atomic_load_explicit(&gw_m_shm->nroutes, memory_order_acquire);
    int i = gw_m_find(gw_m_shm->routes, n, name);
    return i >= 0 ? i : GW_METRICS_ROUTE_OTHER;
}

int gw_metrics_upstream_slot(const char *name)
{
    if (!gw_m_shm || !name)
        return GW_METRICS_UPSTREAM_OTHER;
    uint32_t n = atomic_load_explicit(&gw_m_shm->nupstreams, memory_order_acquire);
    int i = gw_m_find(gw_m_shm->upstreams, n, name);
    return i >= 0 ? i : GW_METRICS_UPSTREAM_OTHER;
}

void gw_metrics_reset_gauges(int worker_index)
{
    if (!gw_m_shm || worker_index < 0 || worker_index >= gw_m_shm->max_workers)
        return;
    gw_m_area_t *a = gw_m_area_of(worker_index);
    a->active = 0;
    a->tunnels = 0;
    memset(a->idle, 0, sizeof a->idle);
}

void gw_metrics_set_worker(int worker_index)
{
    gw_m_area = NULL;
    if (!gw_m_shm || worker_index < 0 || worker_index >= gw_m_shm->max_workers)
        return;
    gw_metrics_reset_gauges(worker_index);
    gw_m_area = gw_m_area_of(worker_index);
}

void gw_metrics_set_workers(int n)
{
    if (gw_m_shm)
        gw_m_shm->workers = n;
}

void gw_metrics_request(int route_slot, int status)
{
    gw_m_area_t *a = gw_m_area;
    if (!a || status < 100 || status > 599)
        return;
    size_t r;
    if (route_slot < 0)
        r = GW_M_NO_ROUTE_SLOT;
    else if (route_slot > GW_METRICS_ROUTE_OTHER)
        r = GW_METRICS_ROUTE_OTHER;
    else
        r = (size_t)route_slot;
    unsigned s = (unsigned)status - 100;
    a->requests[r][s]++;
    uint64_t bit = UINT64_C(1) << (s & 63);
    if (!(a->status_bits[r][s >> 6] & bit))
        a->status_bits[r][s >> 6] |= bit;
}

static size_t gw_m_upstream_index(int slot)
{
    return (slot < 0 || slot > GW_METRICS_UPSTREAM_OTHER) ? GW_METRICS_UPSTREAM_OTHER
                                                          : (size_t)slot;
}

void gw_metrics_upstream_latency(int upstream_slot, double seconds)
{
    gw_m_area_t *a = gw_m_area;
    if (!a || seconds != seconds)
        return;
    if (seconds < 0)
        seconds = 0;
    gw_m_hist_t *h = &a->latency[gw_m_upstream_index(upstream_slot)];
    size_t b = 0;
    while (b < GW_M_BUCKETS - 1 && seconds > gw_m_bounds[b])
        b++;
    h->buckets[b]++;
    h->count++;
    h->sum += seconds;
}

void gw_metrics_active_connections(int delta)
{
    if (gw_m_area)
        gw_m_area->active += delta;
}

void gw_metrics_open_tunnels(int delta)
{
    if (gw_m_area)
        gw_m_area->tunnels += delta;
}

void gw_metrics_idle_connections(int upstream_slot, int delta)
{
    if (gw_m_area)
        gw_m_area->idle[gw_m_upstream_index(upstream_slot)] += delta;
}

/* ---- rendering ---- */

typedef struct {
    char *p;
    size_t len, cap;
} gw_m_buf_t;

static void gw_m_reserve(gw_m_buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    b->p = gw_xrealloc(b->p, cap);
    b->cap = cap;
}

static void gw_m_put(gw_m_buf_t *b, const char *s, size_t n)
{
    gw_m_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void gw_m_puts(gw_m_buf_t *b, const char *s)
{
    gw_m_put(b, s, strlen(s));
}

static void gw_m_printf(gw_m_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void gw_m_printf(gw_m_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    gw_m_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A label value, escaped per the text format: backslash, quote, newline. */
static void gw_m_label(gw_m_buf_t *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            gw_m_put(b, "\\\\", 2);
        else if (*v == '"')
            gw_m_put(b, "\\\"", 2);
        else if (*v == '\n')
            gw_m_put(b, "\\n", 2);
        else
            gw_m_put(b, v, 1);
    }
}

/* The shortest of %.15g..%.17g that reads back as the same double. */
static void gw_m_double(gw_m_buf_t *b, double v)
{
    char s[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    gw_m_puts(b, s);
}

static void gw_m_family(gw_m_buf_t *b, const char *name, const char *type, const char *help)
{
    gw_m_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *gw_m_route_label(uint32_t slot)
{
    if (slot == GW_METRICS_ROUTE_OTHER)
        return "other";
    if (slot == GW_M_NO_ROUTE_SLOT)
        return "";
    return gw_m_shm->routes[slot];
}

static const char *gw_m_upstream_label(uint32_t slot)
{
    return slot == GW_METRICS_UPSTREAM_OTHER ? "other" : gw_m_shm->upstreams[slot];
}

/* moongate_requests_total for one route slot: each non-zero status. */
static void gw_m_render_route(gw_m_buf_t *b, uint32_t slot)
{
    int nw = gw_m_shm->max_workers;
    for (unsigned w = 0; w < GW_M_STATUS_WORDS; w++) {
        uint64_t any = 0;
        for (int i = 0; i < nw; i++)
            any |= gw_m_area_of(i)->status_bits[slot][w];
        while (any) {
            unsigned s = w * 64 + (unsigned)__builtin_ctzll(any);
            uint64_t bit = UINT64_C(1) << (s & 63);
            any &= any - 1;
            uint64_t total = 0;
            for (int i = 0; i < nw; i++) {
                const gw_m_area_t *a = gw_m_area_of(i);
                if (a->status_bits[slot][w] & bit)
                    total += a->requests[slot][s];
            }
            if (!total)
                continue;
            gw_m_puts(b, "moongate_requests_total{route=\"");
            gw_m_label(b, gw_m_route_label(slot));
            gw_m_printf(b, "\",status=\"%u\"} %llu\n", s + 100, (unsigned long long)total);
        }
    }
}

/* The histogram series of one upstream slot, if it has samples. */
static void gw_m_render_latency(gw_m_buf_t *b, uint32_t slot)
{
    gw_m_hist_t h = {{0}, 0, 0};
    for (int i = 0; i < gw_m_shm->max_workers; i++) {
        const gw_m_hist_t *src = &gw_m_area_of(i)->latency[slot];
        for (int k = 0; k < GW_M_BUCKETS; k++)
            h.buckets[k] += src->buckets[k];
        h.count += src->count;
        h.sum += src->sum;
    }
    if (!h.count)
        return;
    const char *name = gw_m_upstream_label(slot);
    uint64_t cumulative = 0;
    for (int k = 0; k < GW_M_BUCKETS; k++) {
        cumulative += h.buckets[k];
        gw_m_puts(b, "moongate_upstream_latency_seconds_bucket{upstream=\"");
        gw_m_label(b, name);
        gw_m_printf(b, "\",le=\"%s\"} %llu\n", gw_m_bound_names[k], (unsigned long long)cumulative);
    }
    gw_m_puts(b, "moongate_upstream_latency_seconds_sum{upstream=\"");
    gw_m_label(b, name);
    gw_m_puts(b, "\"} ");
    gw_m_double(b, h.sum);
    gw_m_puts(b, "\nmoongate_upstream_latency_seconds_count{upstream=\"");
    gw_m_label(b, name);
    gw_m_printf(b, "\"} %llu\n", (unsigned long long)h.count);
}

/* moongate_upstream_idle_connections of one slot; skip_zero for "other". */
static void gw_m_render_idle(gw_m_buf_t *b, uint32_t slot, bool skip_zero)
{
    int64_t idle = 0;
    for (int i = 0; i < gw_m_shm->max_workers; i++)
        idle += gw_m_area_of(i)->idle[slot];
    if (skip_zero && !idle)
        return;
    gw_m_puts(b, "moongate_upstream_idle_connections{upstream=\"");
    gw_m_label(b, gw_m_upstream_label(slot));
    gw_m_printf(b, "\"} %lld\n", (long long)idle);
}

size_t gw_metrics_render(char **out)
{
    gw_m_buf_t b = {NULL, 0, 0};
    gw_m_reserve(&b, 0);
    b.p[0] = '\0';
    uint32_t nroutes = 0, nups = 0;
    int64_t active = 0, tunnels = 0, workers = 0;
    if (gw_m_shm) {
        nroutes = atomic_load_explicit(&gw_m_shm->nroutes, memory_order_acquire);
        nups = atomic_load_explicit(&gw_m_shm->nupstreams, memory_order_acquire);
        workers = gw_m_shm->workers;
        for (int i = 0; i < gw_m_shm->max_workers; i++) {
            active += gw_m_area_of(i)->active;
            tunnels += gw_m_area_of(i)->tunnels;
        }
    }

    gw_m_family(&b, "moongate_requests_total", "counter",
                "Requests answered, by route and status code.");
    if (gw_m_shm) {
        for (uint32_t r = 0; r < nroutes; r++)
            gw_m_render_route(&b, r);
        gw_m_render_route(&b, GW_METRICS_ROUTE_OTHER);
        gw_m_render_route(&b, GW_M_NO_ROUTE_SLOT);
    }

    gw_m_family(&b, "moongate_upstream_latency_seconds", "histogram",
                "Time from starting a request upstream to the end of its response, in seconds.");
    if (gw_m_shm) {
        for (uint32_t u = 0; u < nups; u++)
            gw_m_render_latency(&b, u);
        gw_m_render_latency(&b, GW_METRICS_UPSTREAM_OTHER);
    }

    gw_m_family(&b, "moongate_active_connections", "gauge", "Open client connections.");
    gw_m_printf(&b, "moongate_active_connections %lld\n", (long long)active);

    gw_m_family(&b, "moongate_open_tunnels", "gauge",
                "Upgraded connections (WebSocket) relaying bytes.");
    gw_m_printf(&b, "moongate_open_tunnels %lld\n", (long long)tunnels);

    gw_m_family(&b, "moongate_upstream_idle_connections", "gauge",
                "Idle keep-alive connections to upstreams.");
    if (gw_m_shm) {
        for (uint32_t u = 0; u < nups; u++)
            gw_m_render_idle(&b, u, false);
        gw_m_render_idle(&b, GW_METRICS_UPSTREAM_OTHER, true);
    }

    gw_m_family(&b, "moongate_workers", "gauge", "Worker processes.");
    gw_m_printf(&b, "moongate_workers %lld\n", (long long)workers);

    *out = b.p;
    return b.len;
}
