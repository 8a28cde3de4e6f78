/*
 * Worker heartbeats in shared memory. Each worker process stamps its slot
 * from its event loop (every 100 ms); the master checks the stamps and
 * replaces a worker whose loop stopped turning, such as one running a Lua
 * script stuck in a loop (JIT-compiled loops ignore debug hooks, so the
 * worker cannot stop such a script itself).
 */
#ifndef GW_WATCHDOG_H
#define GW_WATCHDOG_H

#include "gw_core.h"

/* Master, before forking: room for `slots` heartbeats. GW_OK/GW_ERROR. */
int gw_watchdog_init(int slots);

void gw_watchdog_free(void);

/* Stamp slot with the current monotonic time (worker, and the master when
 * it starts a worker in that slot). */
void gw_watchdog_beat(int slot);

/* Seconds since the slot's last stamp. */
double gw_watchdog_age(int slot);

#endif
