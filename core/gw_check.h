/*
 * Loading a config completely, as `moongate check`, start-up and reload all
 * do: the file itself (gw_config_load), the plugins' settings (checked by
 * their schemas in a Lua VM) and the routes (compiled once to catch bad
 * regexes).
 */
#ifndef GW_CHECK_H
#define GW_CHECK_H

#include "gw_config.h"

/* The config in `file`, or NULL with every error found appended to errs. */
gw_config_t *gw_check_load(const char *file, gw_config_errors_t *errs);

#endif
