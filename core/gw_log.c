/* The leveled error log declared in gw_log.h. */
#include "gw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

gw_log_level_t gw_log_level = GW_LOG_INFO;
static int gw_log_fd = 2;

static const char *const gw_log_names[] = {"error", "warn", "info", "debug"};

static int gw_log_open_fd(const char *path)
{
    if (!path || strcmp(path, "stderr") == 0)
        return 2;
    if (strcmp(path, "stdout") == 0)
        return 1;
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int gw_log_open(const char *path, gw_log_level_t level)
{
    int fd = gw_log_open_fd(path);
    if (fd < 0)
        return GW_ERROR;
    gw_log_fd = fd;
    gw_log_level = level;
    return GW_OK;
}

int gw_log_reopen(const char *path, gw_log_level_t level)
{
    int fd = gw_log_open_fd(path);
    if (fd < 0) {
        gw_log_error("cannot open error log %s: %s", path, strerror(errno));
        return GW_ERROR;
    }
    if (gw_log_fd > 2 && gw_log_fd != fd)
        close(gw_log_fd);
    gw_log_fd = fd;
    gw_log_level = level;
    return GW_OK;
}

void gw_log_write(gw_log_level_t level, const char *fmt, ...)
{
    char line[4096];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    int n = (int)strftime(line, sizeof line, "%Y/%m/%d %H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, " [%s] %d: ", gw_log_names[level],
                  (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(gw_log_fd, line, (size_t)n);
    (void)w;
}
