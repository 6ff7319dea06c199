/*-------------------------------------------------------------------------
 *
 * worker_shmem.h
 *		The shared state of pulse's background workers (the launcher's
 *		slots, see worker.c for their rules) and the wake-up that any
 *		backend may send them.  See worker_shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_WORKER_SHMEM_H
#define PULSE_WORKER_SHMEM_H

#include "postgres.h"

#include <sys/types.h>

#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Start requests from pulse_worker_wake kept for the launcher. */
#define WRK_MAX_REQUESTS			16

typedef enum WrkSlotState
{
	WRK_FREE = 0,
	WRK_STARTING,				/* registered by the launcher */
	WRK_RUNNING,				/* claimed by its worker */
	WRK_EXITED					/* left by its worker; launcher reaps it */
} WrkSlotState;

typedef enum WrkExit
{
	WRK_EXIT_ERROR = 0,			/* died: restart after a back-off */
	WRK_EXIT_NO_EXTENSION,		/* no pulse here: retry after launcher_naptime */
	WRK_EXIT_STOPPED			/* asked to leave: hold WRK_STOP_HOLD_MS */
} WrkExit;

typedef struct WrkSlot
{
	WrkSlotState state;
	Oid			dboid;
	pid_t		pid;			/* while RUNNING */
	Latch	   *latch;			/* while RUNNING: the worker's procLatch */
	bool		stop_requested;
	WrkExit		exit_reason;
	TimestampTz started;		/* when the launcher registered it */
} WrkSlot;

typedef struct WrkShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	int			nrequests;
	Oid			requests[WRK_MAX_REQUESTS];
	bool		rescan;			/* requests overflowed, or a new database */
	int			nslots;
	WrkSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} WrkShared;

/*
 * The slots, in shared memory; NULL until the shmem startup hook ran (the
 * library was not preloaded).  pulse_wrk_shared->lock protects every field.
 */
extern WrkShared *pulse_wrk_shared;

/*
 * Installs the shared-memory hooks that allocate pulse_wrk_shared with
 * nslots slots.  Called from _PG_init while shared_preload_libraries is
 * processed.
 */
extern void pulse_worker_shmem_init(int nslots);

/*
 * Wakes the worker of database dboid (if one runs) so that it looks for due
 * jobs and aggregates now rather than after its nap, or asks the launcher to
 * start one.  Safe to call from any backend; does nothing when the library
 * was not preloaded.
 */
extern void pulse_worker_wake(Oid dboid);

#endif							/* PULSE_WORKER_SHMEM_H */
