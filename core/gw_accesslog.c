/* The JSON access log declared in gw_accesslog.h. */
#include "gw_accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define GW_AL_BUF_SIZE (64 * 1024)
#define GW_AL_FIXED    384 /* an entry's bytes besides its escaped strings */

static char gw_al_buf[GW_AL_BUF_SIZE];
static size_t gw_al_len;
static int gw_al_fd = -1;

static int64_t gw_al_sec = -1; /* the second formatted in gw_al_stamp */
static char gw_al_stamp[24];   /* "2026-11-22T10:00:00" */
static size_t gw_al_stamp_len;

/* Write the buffer out; on an error other than EINTR the rest is dropped. */
void gw_accesslog_flush(void)
{
    size_t off = 0;
    while (gw_al_fd >= 0 && off < gw_al_len) {
        ssize_t n = write(gw_al_fd, gw_al_buf + off, gw_al_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    gw_al_len = 0;
}

int gw_accesslog_open(const char *path)
{
    int fd;
    if (!path)
        return GW_ERROR;
    if (strcmp(path, "stdout") == 0)
        fd = 1;
    else if (strcmp(path, "stderr") == 0)
        fd = 2;
    else if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        return GW_ERROR;
    gw_accesslog_close();
    gw_al_fd = fd;
    return GW_OK;
}

void gw_accesslog_close(void)
{
    gw_accesslog_flush();
    if (gw_al_fd > 2)
        close(gw_al_fd);
    gw_al_fd = -1;
}

/* Append n bytes, flushing when the buffer fills (only for huge lines). */
static void gw_al_put(const char *s, size_t n)
{
    while (n > 0) {
        if (gw_al_len == GW_AL_BUF_SIZE)
            gw_accesslog_flush();
        size_t room = GW_AL_BUF_SIZE - gw_al_len;
        size_t k = n < room ? n : room;
        memcpy(gw_al_buf + gw_al_len, s, k);
        gw_al_len += k;
        s += k;
        n -= k;
    }
}

#define GW_AL_LIT(s) gw_al_put((s), sizeof(s) - 1)

/* A JSON string with its quotes: escapes '"', '\' and control characters. */
static void gw_al_string(gw_str_t v)
{
    static const char hex[] = "0123456789abcdef";
    GW_AL_LIT("\"");
    size_t run = 0;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (i > run)
            gw_al_put(v.p + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            gw_al_put(esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            gw_al_put(esc, 6);
        }
    }
    if (v.len > run)
        gw_al_put(v.p + run, v.len - run);
    GW_AL_LIT("\"");
}

/* A string, or null when it is empty. */
static void gw_al_string_or_null(gw_str_t v)
{
    if (v.len == 0)
        GW_AL_LIT("null");
    else
        gw_al_string(v);
}

/* Decimal digits of v at the end of buf[20]; returns where they start. */
static char *gw_al_digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

static void gw_al_uint(uint64_t v)
{
    char buf[20];
    char *p = gw_al_digits(buf + sizeof buf, v);
    gw_al_put(p, (size_t)(buf + sizeof buf - p));
}

/* Seconds with 4 decimals ("0.0012"), independent of the locale. */
static void gw_al_seconds(double s)
{
    if (!(s > 0))
        s = 0;
    if (s > 1e9)
        s = 1e9;
    uint64_t units = (uint64_t)(s * 10000 + 0.5);
    gw_al_uint(units / 10000);
    char frac[5] = {'.'};
    uint64_t f = units % 10000;
    for (int i = 4; i >= 1; i--, f /= 10)
        frac[i] = (char)('0' + f % 10);
    gw_al_put(frac, sizeof frac);
}

/* "2026-11-22T10:00:00.123Z": the second is formatted once, then cached. */
static void gw_al_time(double t)
{
    if (!(t > 0) || t > 1e11)
        t = 0;
    int64_t us = (int64_t)(t * 1e6 + 0.5);
    int64_t sec = us / 1000000;
    if (sec != gw_al_sec) {
        time_t tt = (time_t)sec;
        struct tm tm;
        gmtime_r(&tt, &tm);
        gw_al_stamp_len = strftime(gw_al_stamp, sizeof gw_al_stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        gw_al_sec = sec;
    }
    unsigned ms = (unsigned)(us % 1000000 / 1000);
    char tail[6] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '"'};
    GW_AL_LIT("\"");
    gw_al_put(gw_al_stamp, gw_al_stamp_len);
    gw_al_put(tail, sizeof tail);
}

/*
 * Starts with a flush when the worst case of the entry does not fit, so a
 * line is written by a single write(2) unless it is larger than the buffer.
 */
void gw_accesslog_write(const gw_access_entry_t *e)
{
    if (gw_al_fd < 0)
        return;
    size_t strings = e->request_id.len + e->client.len + e->method.len + e->path.len +
                     e->route.len + e->upstream.len;
    if (gw_al_len + GW_AL_FIXED + 6 * strings > GW_AL_BUF_SIZE)
        gw_accesslog_flush();

    GW_AL_LIT("{\"time\":");
    gw_al_time(e->time);
    GW_AL_LIT(",\"request_id\":");
    gw_al_string(e->request_id);
    GW_AL_LIT(",\"client\":");
    gw_al_string(e->client);
    if (e->tls)
        GW_AL_LIT(",\"scheme\":\"https\"");
    else
        GW_AL_LIT(",\"scheme\":\"http\"");
    GW_AL_LIT(",\"method\":");
    gw_al_string(e->method);
    GW_AL_LIT(",\"path\":");
    gw_al_string(e->path);
    GW_AL_LIT(",\"route\":");
    gw_al_string_or_null(e->route);
    GW_AL_LIT(",\"upstream\":");
    gw_al_string_or_null(e->upstream);
    GW_AL_LIT(",\"status\":");
    gw_al_uint(e->status > 0 ? (uint64_t)e->status : 0);
    GW_AL_LIT(",\"bytes_sent\":");
    gw_al_uint(e->bytes_sent);
    GW_AL_LIT(",\"bytes_received\":");
    gw_al_uint(e->bytes_received);
    GW_AL_LIT(",\"request_time\":");
    gw_al_seconds(e->request_time);
    GW_AL_LIT(",\"upstream_time\":");
    if (e->upstream_time < 0)
        GW_AL_LIT("null");
    else
        gw_al_seconds(e->upstream_time);
    GW_AL_LIT("}\n");
}
