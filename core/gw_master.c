/*
 * The master process: owns the listening sockets (one SO_REUSEPORT socket
 * per worker and address), forks the workers and restarts any that dies,
 * serves the status listener, and handles signals:
 *   SIGTERM, SIGINT, SIGQUIT  workers drain their requests, then all exit
 *   SIGHUP                    re-read the config; when it is valid, start
 *                             workers on it and let the old ones drain; when
 *                             it is not, log why and keep the running one
 */
#include "gw_master.h"

#include "gw_check.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_net.h"
#include "gw_shdict.h"
#include "gw_tls_conf.h"
#include "gw_status.h"
#include "gw_watchdog.h"
#include "gw_worker.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GW_MAX_WORKERS 64

/* Listening sockets for one address: one per worker index. */
typedef struct {
    gw_addr_conf_t addr;
    int backlog;
    int fds[GW_MAX_WORKERS];
    bool used; /* by the current config */
} gw_listen_slot_t;

/* Metrics areas: one per live worker process; a draining worker and its
 * replacement write to different areas. */
#define GW_METRICS_AREAS (GW_MAX_WORKERS * 2)

typedef struct {
    pid_t pid;
    int index;
    int area;
    bool killed; /* by the watchdog */
    unsigned generation;
    double started;
} gw_child_t;

typedef struct {
    struct ev_loop *loop;
    char *config_path;
    gw_config_t *cfg;  /* current generation's config */
    gw_config_t **old; /* configs of generations still draining */
    size_t nold;
    unsigned generation;
    gw_listen_slot_t *slots;
    size_t nslots;
    gw_child_t children[GW_METRICS_AREAS];
    bool area_used[GW_METRICS_AREAS];
    size_t nchildren;
    int status_fd;
    gw_status_t *status;
    ev_signal sig_term, sig_int, sig_quit, sig_hup;
    ev_child child_w;
    ev_timer kill_timer;
    ev_timer respawn_timer;
    ev_timer watchdog_timer;
    ev_timer ticket_timer;        /* rotates the TLS session ticket keys */
    bool respawn[GW_MAX_WORKERS]; /* worker indexes waiting to be started */
    bool stopping;
    bool pid_written;
} gw_master_t;

static int gw_master_shared_dicts(const gw_config_t *cfg);

static gw_listen_slot_t *gw_slot_find(gw_master_t *m, const gw_addr_conf_t *a)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].addr.port == a->port && strcmp(m->slots[i].addr.host, a->host) == 0)
            return &m->slots[i];
    return NULL;
}

static void gw_slot_close(gw_listen_slot_t *s, int from)
{
    for (int i = from; i < GW_MAX_WORKERS; i++)
        if (s->fds[i] >= 0) {
            close(s->fds[i]);
            s->fds[i] = -1;
        }
}

/*
 * Make sure every listen address of cfg has a socket for each of its
 * workers; close sockets of addresses (or worker indexes) no longer used.
 * Returns GW_OK, or GW_ERROR with the reason logged (nothing is closed
 * then).
 */
static int gw_master_listen(gw_master_t *m, const gw_config_t *cfg)
{
    char err[256];
    for (size_t i = 0; i < m->nslots; i++)
        m->slots[i].used = false;
    for (size_t i = 0; i < cfg->nlistens; i++) {
        const gw_listen_conf_t *l = &cfg->listens[i];
        gw_listen_slot_t *s = gw_slot_find(m, &l->addr);
        if (!s && gw_net_check_free(&l->addr, err, sizeof err) != GW_OK) {
            gw_log_error("%s (is another gateway running?)", err);
            return GW_ERROR;
        }
        if (!s) {
            m->slots = gw_xrealloc(m->slots, (m->nslots + 1) * sizeof *m->slots);
            s = &m->slots[m->nslots++];
            memset(s, 0, sizeof *s);
            s->addr.host = gw_xstrdup(l->addr.host);
            s->addr.port = l->addr.port;
            s->backlog = l->backlog;
            for (int k = 0; k < GW_MAX_WORKERS; k++)
                s->fds[k] = -1;
        }
        s->used = true;
        for (int k = 0; k < cfg->workers; k++) {
            if (s->fds[k] >= 0)
                continue;
            s->fds[k] = gw_net_listen(&s->addr, s->backlog, true, err, sizeof err);
            if (s->fds[k] < 0) {
                gw_log_error("%s", err);
                return GW_ERROR;
            }
        }
    }
    for (size_t i = 0; i < m->nslots;) {
        gw_listen_slot_t *s = &m->slots[i];
        if (!s->used) {
            gw_slot_close(s, 0);
            free(s->addr.host);
            m->slots[i] = m->slots[--m->nslots];
            continue;
        }
        gw_slot_close(s, cfg->workers);
        i++;
    }
    return GW_OK;
}

/* In a new worker: drop the master's watchers and every descriptor that is
 * not this worker's. */
static void gw_master_child_cleanup(gw_master_t *m, int index, int *fds)
{
    ev_signal_stop(m->loop, &m->sig_term);
    ev_signal_stop(m->loop, &m->sig_int);
    ev_signal_stop(m->loop, &m->sig_quit);
    ev_signal_stop(m->loop, &m->sig_hup);
    ev_child_stop(m->loop, &m->child_w);
    ev_timer_stop(m->loop, &m->kill_timer);
    ev_timer_stop(m->loop, &m->respawn_timer);
    ev_timer_stop(m->loop, &m->watchdog_timer);
    ev_timer_stop(m->loop, &m->ticket_timer);
    if (m->status) {
        gw_status_stop(m->status);
        m->status = NULL;
    }
    if (m->status_fd >= 0)
        close(m->status_fd);
    const gw_config_t *cfg = m->cfg;
    for (size_t i = 0; i < cfg->nlistens; i++)
        fds[i] = gw_slot_find(m, &cfg->listens[i].addr)->fds[index];
    for (size_t i = 0; i < m->nslots; i++)
        for (int k = 0; k < GW_MAX_WORKERS; k++) {
            int fd = m->slots[i].fds[k];
            bool mine = false;
            for (size_t j = 0; j < cfg->nlistens; j++)
                mine = mine || fds[j] == fd;
            if (fd >= 0 && !mine)
                close(fd);
        }
    ev_loop_fork(m->loop);
}

static void gw_master_spawn(gw_master_t *m, int index);

/* Start worker `index` in a second: used after a crash right at start-up
 * (no restart loop burning the CPU) and when a start failed. */
static void gw_master_respawn_later(gw_master_t *m, int index)
{
    m->respawn[index] = true;
    if (!ev_is_active(&m->respawn_timer)) {
        ev_timer_set(&m->respawn_timer, 1., 0.);
        ev_timer_start(m->loop, &m->respawn_timer);
    }
}

static void gw_master_respawn_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_master_t *m = t->data;
    for (int i = 0; i < GW_MAX_WORKERS; i++)
        if (m->respawn[i]) {
            m->respawn[i] = false;
            if (!m->stopping && i < m->cfg->workers)
                gw_master_spawn(m, i);
        }
}

static void gw_master_spawn(gw_master_t *m, int index)
{
    int area = 0;
    while (area < GW_METRICS_AREAS && m->area_used[area])
        area++;
    if (area < GW_METRICS_AREAS)
        gw_watchdog_beat(area); /* the new worker starts with a fresh stamp */
    pid_t pid = area < GW_METRICS_AREAS ? fork() : -1;
    if (pid < 0) {
        if (area == GW_METRICS_AREAS)
            gw_log_error("too many worker processes draining: worker %d waits", index);
        else
            gw_log_error("fork(): %s", strerror(errno));
        gw_master_respawn_later(m, index);
        return;
    }
    if (pid == 0) {
        int fds[64];
        int nfds = (int)m->cfg->nlistens;
        int *lfds = nfds <= 64 ? fds : gw_xcalloc((size_t)nfds, sizeof(int));
        gw_master_child_cleanup(m, index, lfds);
        int rc = gw_worker_run(m->cfg, index, area, lfds);
#ifdef __SANITIZE_ADDRESS__
        __lsan_do_leak_check(); /* _exit skips the leak check that exit does */
#endif
        _exit(rc);
    }
    gw_child_t *c = &m->children[m->nchildren++];
    c->pid = pid;
    c->index = index;
    c->area = area;
    c->killed = false;
    m->area_used[area] = true;
    c->generation = m->generation;
    c->started = gw_now();
    gw_log_info("started worker %d (pid %d)", index, (int)pid);
}

static void gw_master_spawn_all(gw_master_t *m)
{
    gw_metrics_set_workers(m->cfg->workers);
    for (int i = 0; i < m->cfg->workers; i++)
        gw_master_spawn(m, i);
}

static void gw_master_signal_generation(gw_master_t *m, unsigned gen_below, int sig)
{
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation < gen_below)
            kill(m->children[i].pid, sig);
}

/* Free configs of generations that have no worker left. */
static void gw_master_gc(gw_master_t *m)
{
    if (m->nold == 0)
        return;
    unsigned oldest = m->generation;
    for (size_t i = 0; i < m->nchildren; i++)
        if (m->children[i].generation < oldest)
            oldest = m->children[i].generation;
    if (oldest == m->generation) {
        for (size_t i = 0; i < m->nold; i++)
            gw_config_free(m->old[i]);
        m->nold = 0;
    }
}

static void gw_master_reload(gw_master_t *m)
{
    gw_log_info("reloading %s", m->config_path);
    gw_config_errors_t errs = {0};
    gw_config_t *cfg = gw_check_load(m->config_path, &errs);
    if (!cfg) {
        char line[1024];
        for (size_t i = 0; i < errs.count; i++) {
            gw_config_error_format(&errs.items[i], line, sizeof line);
            gw_log_error("reload refused: %s", line);
        }
        gw_config_errors_free(&errs);
        return;
    }
    if (gw_master_shared_dicts(cfg) != GW_OK || gw_master_listen(m, cfg) != GW_OK) {
        gw_log_error("reload refused: cannot open what the new config needs");
        gw_config_free(cfg);
        gw_master_listen(m, m->cfg);
        return;
    }
    gw_log_reopen(cfg->error_log.path, cfg->error_log.level);
    m->old = gw_xrealloc(m->old, (m->nold + 1) * sizeof *m->old);
    m->old[m->nold++] = m->cfg;
    m->cfg = cfg;
    m->generation++;
    gw_metrics_register(cfg);
    gw_master_spawn_all(m);
    gw_master_signal_generation(m, m->generation, SIGQUIT);
    gw_master_gc(m);
}

static void gw_master_stop(gw_master_t *m)
{
    if (m->stopping)
        return;
    m->stopping = true;
    gw_log_info("shutting down: draining %zu worker(s)", m->nchildren);
    gw_master_signal_generation(m, m->generation + 1, SIGTERM);
    for (size_t i = 0; i < m->nslots; i++)
        gw_slot_close(&m->slots[i], 0);
    m->kill_timer.repeat = m->cfg->timeouts.drain + 5;
    ev_timer_again(m->loop, &m->kill_timer);
    if (m->nchildren == 0)
        ev_break(m->loop, EVBREAK_ALL);
}

static void gw_master_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    gw_master_t *m = s->data;
    if (s->signum == SIGHUP) {
        if (!m->stopping)
            gw_master_reload(m);
        return;
    }
    gw_master_stop(m);
}

static void gw_master_kill_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_master_t *m = t->data;
    gw_log_warn("workers did not exit in time: killing them");
    gw_master_signal_generation(m, m->generation + 1, SIGKILL);
}

/* libev reaped a child (w->rpid, w->rstatus): forget it, and start a new
 * worker in its place when it belonged to the current generation. */
static void gw_master_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    gw_master_t *m = w->data;
    pid_t pid = w->rpid;
    int status = w->rstatus;
    size_t i;
    for (i = 0; i < m->nchildren && m->children[i].pid != pid; i++)
        ;
    if (i == m->nchildren)
        return;
    gw_child_t c = m->children[i];
    m->children[i] = m->children[--m->nchildren];
    gw_metrics_reset_gauges(c.area);
    m->area_used[c.area] = false;
    bool current = c.generation == m->generation;
    if (WIFSIGNALED(status))
        gw_log_error("worker %d (pid %d) killed by signal %d", c.index, (int)pid, WTERMSIG(status));
    else if (current && !m->stopping)
        gw_log_error("worker %d (pid %d) exited with code %d", c.index, (int)pid,
                     WEXITSTATUS(status));
    if (current && !m->stopping) {
        if (gw_now() - c.started < 1.0)
            gw_master_respawn_later(m, c.index);
        else
            gw_master_spawn(m, c.index);
    }
    gw_master_gc(m);
    if (m->stopping && m->nchildren == 0)
        ev_break(loop, EVBREAK_ALL);
}

/* Every 250 ms: kill workers whose event loop has not turned for
 * timeouts.watchdog seconds; the usual restart replaces them. */
static void gw_master_watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_master_t *m = t->data;
    double limit = m->cfg->timeouts.watchdog;
    if (limit <= 0)
        return;
    for (size_t i = 0; i < m->nchildren; i++) {
        gw_child_t *c = &m->children[i];
        double age = gw_watchdog_age(c->area);
        if (age > limit && !c->killed) {
            gw_log_error("worker %d (pid %d) stopped responding (no heartbeat for %.1f s): "
                         "replacing it",
                         c->index, (int)c->pid, age);
            kill(c->pid, SIGKILL);
            c->killed = true;
        }
    }
}

static void gw_master_ticket_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_tls_tickets_rotate();
}

static bool gw_master_ready(void *ud)
{
    gw_master_t *m = ud;
    int n = 0;
    for (size_t i = 0; i < m->nchildren; i++)
        n += m->children[i].generation == m->generation;
    return !m->stopping && n >= m->cfg->workers;
}

static int gw_write_pid_file(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0755);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return GW_ERROR;
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    return GW_OK;
}

static void gw_master_watch(gw_master_t *m)
{
    struct {
        ev_signal *w;
        int sig;
    } sigs[] = {{&m->sig_term, SIGTERM},
                {&m->sig_int, SIGINT},
                {&m->sig_quit, SIGQUIT},
                {&m->sig_hup, SIGHUP}};
    for (size_t i = 0; i < GW_ARRAY_LEN(sigs); i++) {
        ev_signal_init(sigs[i].w, gw_master_signal_cb, sigs[i].sig);
        sigs[i].w->data = m;
        ev_signal_start(m->loop, sigs[i].w);
    }
    ev_child_init(&m->child_w, gw_master_child_cb, 0, 0);
    m->child_w.data = m;
    ev_child_start(m->loop, &m->child_w);
    ev_init(&m->kill_timer, gw_master_kill_cb);
    m->kill_timer.data = m;
    ev_init(&m->respawn_timer, gw_master_respawn_cb);
    m->respawn_timer.data = m;
    ev_timer_init(&m->watchdog_timer, gw_master_watchdog_cb, 0.25, 0.25);
    m->watchdog_timer.data = m;
    ev_timer_start(m->loop, &m->watchdog_timer);
    ev_timer_init(&m->ticket_timer, gw_master_ticket_cb, GW_TLS_TICKET_ROTATE,
                  GW_TLS_TICKET_ROTATE);
    ev_timer_start(m->loop, &m->ticket_timer);
}

/*
 * Create the shared dictionaries of cfg that do not exist yet, before any
 * worker of cfg is forked. A dictionary keeps its contents (and its size)
 * across reloads. GW_OK, or GW_ERROR with the reason logged.
 */
static int gw_master_shared_dicts(const gw_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nshared_dicts; i++) {
        const char *name = cfg->shared_dicts[i].name;
        if (gw_shdict_find(name))
            continue;
        gw_shdict_t *d = gw_shdict_create(name, (size_t)cfg->shared_dicts[i].size);
        if (!d || gw_shdict_register(d) != GW_OK) {
            gw_log_error("cannot create shared dictionary %s", name);
            gw_shdict_destroy(d);
            return GW_ERROR;
        }
    }
    return GW_OK;
}

/* Open what the master serves with: metrics, listeners, status, pid
 * file. GW_OK, or GW_ERROR with the reason logged. */
static int gw_master_open(gw_master_t *m)
{
    gw_config_t *cfg = m->cfg;
    if (gw_metrics_init(GW_METRICS_AREAS) != GW_OK || gw_watchdog_init(GW_METRICS_AREAS) != GW_OK) {
        gw_log_error("cannot create shared memory for metrics");
        return GW_ERROR;
    }
    if (gw_tls_tickets_init() != GW_OK)
        return GW_ERROR;
    gw_metrics_register(cfg);
    if (gw_master_shared_dicts(cfg) != GW_OK || gw_master_listen(m, cfg) != GW_OK)
        return GW_ERROR;
    if (cfg->status_enabled) {
        char err[256];
        m->status_fd = gw_net_listen(&cfg->status_listen, 128, false, err, sizeof err);
        if (m->status_fd < 0) {
            gw_log_error("status listener: %s", err);
            return GW_ERROR;
        }
        m->status = gw_status_start(m->loop, m->status_fd, gw_master_ready, m);
    }
    if (cfg->pid_file && gw_write_pid_file(cfg->pid_file) != GW_OK) {
        gw_log_error("cannot write pid file %s: %s", cfg->pid_file, strerror(errno));
        return GW_ERROR;
    }
    m->pid_written = cfg->pid_file != NULL;
    return GW_OK;
}

/* Release everything the master holds. */
static void gw_master_close(gw_master_t *m)
{
    if (m->pid_written)
        unlink(m->cfg->pid_file);
    if (m->status)
        gw_status_stop(m->status);
    if (m->status_fd >= 0)
        close(m->status_fd);
    for (size_t i = 0; i < m->nslots; i++) {
        gw_slot_close(&m->slots[i], 0);
        free(m->slots[i].addr.host);
    }
    free(m->slots);
    for (size_t i = 0; i < m->nold; i++)
        gw_config_free(m->old[i]);
    free(m->old);
    gw_config_free(m->cfg);
    free(m->config_path);
    gw_metrics_free();
    gw_watchdog_free();
    gw_tls_tickets_free();
}

int gw_master_run(const char *config_path, gw_config_t *cfg)
{
    gw_master_t m;
    memset(&m, 0, sizeof m);
    m.config_path = gw_xstrdup(config_path);
    m.cfg = cfg;
    m.status_fd = -1;
    m.loop = ev_default_loop(EVFLAG_AUTO);
    signal(SIGPIPE, SIG_IGN);
    if (cfg->workers > GW_MAX_WORKERS)
        cfg->workers = GW_MAX_WORKERS;
    if (gw_master_open(&m) != GW_OK) {
        gw_master_close(&m);
        return 1;
    }
    gw_master_watch(&m);
    gw_log_info("moongate %s started: %zu listener(s), %d worker(s)", GW_VERSION, cfg->nlistens,
                cfg->workers);
    gw_master_spawn_all(&m);
    ev_run(m.loop, 0);
    gw_log_info("moongate stopped");
    gw_master_close(&m);
    return 0;
}
