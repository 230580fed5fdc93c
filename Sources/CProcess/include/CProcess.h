// Process controls that Swift cannot call directly (prctl is variadic).
#ifndef CPROCESS_H
#define CPROCESS_H

// Asks the kernel to send `signal` to this process when its parent exits (Linux prctl PR_SET_PDEATHSIG).
// Returns 0 on success, -1 (errno set) on failure or where the platform has no such control.
int cprocess_set_parent_death_signal(int signal);

#endif
