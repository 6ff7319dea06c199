/*-------------------------------------------------------------------------
 *
 * worker_shmem.c
 *		The shared memory of pulse's background workers, and
 *		pulse_worker_wake.
 *
 * worker.c runs the launcher and the workers and owns the slots' life
 * cycle; this file only allocates the slot table and lets any backend
 * (a job submission, create_aggregate) set the latch of the worker of its
 * database, or queue a start request for the launcher.  It depends on
 * nothing else of pulse, so the files that wake the worker (aggregate.c,
 * jobs.c) do not depend on the worker that calls them.
 *
 * Locking: pulse_wrk_shared->lock protects every field of WrkShared; it is
 * held over short sections that cannot fail, latches are set after release.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "worker_shmem.h"

/* Set in the postmaster by the shmem startup hook; inherited by children. */
WrkShared  *pulse_wrk_shared = NULL;

/* Slots to allocate (pulse.max_workers at postmaster start). */
static int	wsh_nslots = 0;

static shmem_request_hook_type wsh_prev_shmem_request_hook = NULL;
static shmem_startup_hook_type wsh_prev_shmem_startup_hook = NULL;

static Size
wsh_shmem_size(void)
{
	return add_size(offsetof(WrkShared, slots),
					mul_size(wsh_nslots, sizeof(WrkSlot)));
}

static void
wsh_shmem_request(void)
{
	if (wsh_prev_shmem_request_hook)
		wsh_prev_shmem_request_hook();
	RequestAddinShmemSpace(wsh_shmem_size());
	RequestNamedLWLockTranche("pulse_worker", 1);
}

static void
wsh_shmem_startup(void)
{
	bool		found;

	if (wsh_prev_shmem_startup_hook)
		wsh_prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pulse_wrk_shared = ShmemInitStruct("pulse_worker", wsh_shmem_size(), &found);
	if (!found)
	{
		memset(pulse_wrk_shared, 0, wsh_shmem_size());
		pulse_wrk_shared->lock = &(GetNamedLWLockTranche("pulse_worker"))->lock;
		pulse_wrk_shared->nslots = wsh_nslots;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
pulse_worker_shmem_init(int nslots)
{
	wsh_nslots = nslots;
	wsh_prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = wsh_shmem_request;
	wsh_prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = wsh_shmem_startup;
}

void
pulse_worker_wake(Oid dboid)
{
	Latch	   *latch = NULL;
	bool		served = false;

	if (pulse_wrk_shared == NULL)
		return;

	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pulse_wrk_shared->nslots; i++)
	{
		WrkSlot    *slot = &pulse_wrk_shared->slots[i];

		if (slot->dboid != dboid)
			continue;
		if (slot->state == WRK_RUNNING)
		{
			latch = slot->latch;
			served = true;
		}
		else if (slot->state == WRK_STARTING)
			served = true;
	}
	if (!served)
	{
		bool		queued = false;

		for (int i = 0; i < pulse_wrk_shared->nrequests; i++)
			if (pulse_wrk_shared->requests[i] == dboid)
				queued = true;
		if (!queued && pulse_wrk_shared->nrequests < WRK_MAX_REQUESTS)
			pulse_wrk_shared->requests[pulse_wrk_shared->nrequests++] = dboid;
		else if (!queued)
			pulse_wrk_shared->rescan = true;
		latch = pulse_wrk_shared->launcher_latch;
	}
	LWLockRelease(pulse_wrk_shared->lock);

	if (latch)
		SetLatch(latch);
}
