#include "CProcess.h"

#include <errno.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

int cprocess_set_parent_death_signal(int signal) {
#ifdef __linux__
    return prctl(PR_SET_PDEATHSIG, signal);
#else
    (void)signal;
    errno = ENOSYS;
    return -1;
#endif
}
