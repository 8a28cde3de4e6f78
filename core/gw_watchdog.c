/* Heartbeats declared in gw_watchdog.h: one double per slot in a shared
 * mapping. A stamp is a single aligned 8-byte store, so a reader in
 * another process sees either the old or the new value. */
#include "gw_watchdog.h"

#include <sys/mman.h>

static volatile double *gw_wd_slots;
static int gw_wd_nslots;

int gw_watchdog_init(int slots)
{
    void *p = mmap(NULL, (size_t)slots * sizeof(double), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return GW_ERROR;
    gw_wd_slots = p;
    gw_wd_nslots = slots;
    for (int i = 0; i < slots; i++)
        gw_wd_slots[i] = gw_now();
    return GW_OK;
}

void gw_watchdog_free(void)
{
    if (gw_wd_slots)
        munmap((void *)gw_wd_slots, (size_t)gw_wd_nslots * sizeof(double));
    gw_wd_slots = NULL;
    gw_wd_nslots = 0;
}

void gw_watchdog_beat(int slot)
{
    if (gw_wd_slots && slot >= 0 && slot < gw_wd_nslots)
        gw_wd_slots[slot] = gw_now();
}

double gw_watchdog_age(int slot)
{
    if (!gw_wd_slots || slot < 0 || slot >= gw_wd_nslots)
        return 0;
    return gw_now() - gw_wd_slots[slot];
}
