/*
 * The leveled error log: one line per message,
 * "2026/11/22 10:00:00 [warn] 1234: message", to stderr or a file.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include "gw_config.h"

/* Open `path` ("stderr" or a file, appended) and set the level. */
int gw_log_open(const char *path, gw_log_level_t level);

/* Reopen after a config change (SIGHUP); keeps the old file on failure. */
int gw_log_reopen(const char *path, gw_log_level_t level);

extern gw_log_level_t gw_log_level;

void gw_log_write(gw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gw_log_error(...) gw_log_write(GW_LOG_ERROR, __VA_ARGS__)
#define gw_log_warn(...)                                                                           \
    do {                                                                                           \
        if (gw_log_level >= GW_LOG_WARN)                                                           \
            gw_log_write(GW_LOG_WARN, __VA_ARGS__);                                                \
    } while (0)
#define gw_log_info(...)                                                                           \
    do {                                                                                           \
        if (gw_log_level >= GW_LOG_INFO)                                                           \
            gw_log_write(GW_LOG_INFO, __VA_ARGS__);                                                \
    } while (0)
#define gw_log_debug(...)                                                                          \
    do {                                                                                           \
        if (gw_log_level >= GW_LOG_DEBUG)                                                          \
            gw_log_write(GW_LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
