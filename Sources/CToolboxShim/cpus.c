#define _GNU_SOURCE
#include <sched.h>
#include "tbx_shim.h"

int tbx_usable_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}
