/*
 * The access log: one JSON object per line per finished request, e.g.
 *
 *   {"time":"2026-11-22T10:00:00.123Z","request_id":"..","client":"127.0.0.1",
 *    "scheme":"https","method":"GET","path":"/x?y=1","route":"r","upstream":"127.0.0.1:9001",
 *    "status":200,"bytes_sent":123,"bytes_received":80,"request_time":0.0012,
 *    "upstream_time":0.0010}
 *
 * (on one line). Lines collect in a 64 KiB per-process buffer that goes out
 * with one write(2) when full or at gw_accesslog_flush, so lines of several
 * workers appending to one file never interleave (except a single line
 * longer than the buffer). One log per process; not thread-safe.
 */
#ifndef GW_ACCESSLOG_H
#define GW_ACCESSLOG_H

#include "gw_core.h"

typedef struct {
    double time; /* wall clock, seconds since the epoch (UTC) */
    gw_str_t request_id, client, method, path;
    bool tls;                 /* came over a TLS listener: "scheme":"https", else "http" */
    gw_str_t route, upstream; /* empty: null in the log */
    int status;
    uint64_t bytes_sent;
    uint64_t bytes_received;
    double request_time;  /* seconds */
    double upstream_time; /* seconds; < 0: no upstream, null in the log */
} gw_access_entry_t;

/*
 * Open "stdout", "stderr" or a file (appended, created 0644). On success a
 * log that was open is flushed and closed; on failure it stays. GW_OK or
 * GW_ERROR (errno set).
 */
int gw_accesslog_open(const char *path);

/* Append one line; a no-op while no log is open. Never allocates. */
void gw_accesslog_write(const gw_access_entry_t *e);

/* Write what is buffered (a worker's 100 ms timer, and at exit). */
void gw_accesslog_flush(void);

/* Flush and close; a later write is a no-op until the next open. */
void gw_accesslog_close(void);

#endif
