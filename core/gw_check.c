/* Complete config loading, declared in gw_check.h. */
#include "gw_check.h"

#include "gw_config_node.h"
#include "gw_lua.h"
#include "gw_router.h"

#include <stdio.h>

gw_config_t *gw_check_load(const char *file, gw_config_errors_t *errs)
{
    gw_config_t *cfg = gw_config_load(file, errs);
    if (!cfg)
        return NULL;
    if (gw_lua_check_config(cfg, errs) != GW_OK) {
        gw_config_free(cfg);
        return NULL;
    }
    char err[1024];
    gw_router_t *router = gw_router_build(cfg, err, sizeof err);
    if (!router) {
        /* The message names the route ("routes[2] (name): ..."): give its line. */
        int index = -1, line = 0;
        if (sscanf(err, "routes[%d]", &index) == 1 && index >= 0 && (size_t)index < cfg->nroutes)
            line = cfg->routes[index].line;
        gw_cnode_add_error(errs, file, line, "", err);
        gw_config_free(cfg);
        return NULL;
    }
    gw_router_free(router);
    return cfg;
}
