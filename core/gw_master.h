/* The master process: listening sockets, workers, signals, status. */
#ifndef GW_MASTER_H
#define GW_MASTER_H

#include "gw_config.h"

/*
 * Serve cfg (loaded from config_path) in the foreground until told to stop.
 * Takes ownership of cfg. Returns the process exit code.
 */
int gw_master_run(const char *config_path, gw_config_t *cfg);

#endif
