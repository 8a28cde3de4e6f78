/*
 * The moongate command line:
 *   moongate [-c FILE]            serve FILE in the foreground
 *   moongate check [-c FILE]      validate FILE and print every error
 *   moongate reload [-c FILE]     tell the running gateway to re-read FILE
 *   moongate stop [-c FILE]       tell the running gateway to drain and exit
 *   moongate version
 */
#include "gw_check.h"
#include "gw_config.h"
#include "gw_log.h"
#include "gw_master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GW_DEFAULT_CONFIG "conf/moongate.yaml"

static void gw_usage(FILE *f)
{
    fprintf(f,
            "usage: moongate [-c FILE]          serve FILE (default %s)\n"
            "       moongate check [-c FILE]    validate FILE\n"
            "       moongate reload [-c FILE]   make the running gateway re-read FILE\n"
            "       moongate stop [-c FILE]     make the running gateway drain and exit\n"
            "       moongate version\n",
            GW_DEFAULT_CONFIG);
}

/* Load and fully validate a config (including route regexes); print every
 * error to stderr. Returns the config or NULL. */
static gw_config_t *gw_load(const char *file)
{
    gw_config_errors_t errs = {0};
    gw_config_t *cfg = gw_check_load(file, &errs);
    if (!cfg) {
        char line[2048];
        for (size_t i = 0; i < errs.count; i++) {
            gw_config_error_format(&errs.items[i], line, sizeof line);
            fprintf(stderr, "%s\n", line);
        }
        gw_config_errors_free(&errs);
    }
    return cfg;
}

/* Send sig to the master whose pid is in the config's pid file. */
static int gw_signal_master(const char *file, int sig)
{
    gw_config_t *cfg = gw_load(file);
    if (!cfg)
        return 1;
    if (!cfg->pid_file) {
        fprintf(stderr, "%s: pid_file is off: cannot find the running gateway\n", file);
        gw_config_free(cfg);
        return 1;
    }
    FILE *f = fopen(cfg->pid_file, "r");
    int pid = 0;
    if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "cannot read pid file %s: %s\n", cfg->pid_file,
                f ? "no pid in it" : strerror(errno));
        if (f)
            fclose(f);
        gw_config_free(cfg);
        return 1;
    }
    fclose(f);
    gw_config_free(cfg);
    if (kill(pid, sig) < 0) {
        fprintf(stderr, "cannot signal moongate (pid %d): %s\n", pid, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = "run", *file = GW_DEFAULT_CONFIG;
    int i = 1;
    if (i < argc && argv[i][0] != '-')
        cmd = argv[i++];
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            gw_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
            cmd = "version";
        } else {
            fprintf(stderr, "moongate: unknown argument: %s\n", argv[i]);
            gw_usage(stderr);
            return 2;
        }
    }
    if (strcmp(cmd, "version") == 0) {
        printf("moongate %s\n", GW_VERSION);
        return 0;
    }
    if (strcmp(cmd, "check") == 0) {
        gw_config_t *cfg = gw_load(file);
        if (!cfg)
            return 1;
        printf("%s: ok\n", file);
        gw_config_free(cfg);
        return 0;
    }
    if (strcmp(cmd, "reload") == 0)
        return gw_signal_master(file, SIGHUP);
    if (strcmp(cmd, "stop") == 0)
        return gw_signal_master(file, SIGTERM);
    if (strcmp(cmd, "run") != 0) {
        fprintf(stderr, "moongate: unknown command: %s\n", cmd);
        gw_usage(stderr);
        return 2;
    }
    gw_config_t *cfg = gw_load(file);
    if (!cfg)
        return 1;
    if (gw_log_open(cfg->error_log.path, cfg->error_log.level) != GW_OK) {
        fprintf(stderr, "cannot open error log %s: %s\n", cfg->error_log.path, strerror(errno));
        gw_config_free(cfg);
        return 1;
    }
    const char *log_path = cfg->error_log.path;
    bool to_stderr = !log_path || strcmp(log_path, "stderr") == 0;
    char *log_copy = to_stderr ? NULL : gw_xstrdup(log_path);
    int rc = gw_master_run(file, cfg);
    if (rc != 0 && log_copy)
        fprintf(stderr, "moongate: failed; see the error log %s\n", log_copy);
    free(log_copy);
    return rc;
}
