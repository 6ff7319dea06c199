/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Background workers of pulse: a launcher, registered when pulse is in
 *		shared_preload_libraries, and one worker per database that refreshes
 *		the materialized aggregates (aggregate.c) and runs the jobs (jobs.c).
 *
 * The launcher connects to no database (like the autovacuum launcher): it
 * reads pg_database every pulse.launcher_naptime, or at once when asked by
 * pulse_worker_wake or SIGHUP, and keeps one worker running for each
 * database named by pulse.database_names, up to pulse.max_workers.  A worker
 * that finds no pulse extension (at version 1.1 or later) in its database
 * exits quietly; the launcher tries that database again after
 * pulse.launcher_naptime, or as soon as someone calls pulse_worker_wake
 * there (CREATE EXTENSION followed by create_aggregate or a job does).  A
 * worker that dies (an error, pg_terminate_backend) is started again after
 * a back-off of 1 s, doubling up to 60 s while it keeps dying quickly.
 * Workers are registered with BGW_NEVER_RESTART on purpose: the launcher
 * knows whether the database still exists, the postmaster does not, and a
 * worker restarted for a dropped database would fail forever.  The launcher
 * itself has a bgw_restart_time, and comes back after a crash.
 *
 * Each worker loops: refresh the due aggregates (one transaction each), run
 * the due jobs (jobs.c manages its transactions), then sleep on its latch
 * for pulse.worker_naptime unless there is more to do.  pulse_worker_wake
 * sets that latch.  Errors are logged and the loop goes on; SIGHUP reloads
 * the configuration; postmaster death ends the process (WL_EXIT_ON_PM_DEATH).
 *
 * A worker holds a connection to its database, which DROP DATABASE, ALTER
 * DATABASE ... RENAME/SET TABLESPACE and CREATE DATABASE ... TEMPLATE refuse.
 * A ProcessUtility hook therefore asks the worker of the database concerned
 * to leave (terminating it after two seconds if it is busy) before such a
 * command runs, and the launcher leaves that database alone for
 * WRK_STOP_HOLD_MS.
 *
 * Shared memory and locking rules:
 *	- WrkShared (worker_shmem.c) is allocated at postmaster start with
 *	  pulse.max_workers slots and zeroed again after a crash restart.
 *	- pulse_wrk_shared->lock protects every field of WrkShared.  It is held
 *	  only over short sections that cannot fail; latches are set after
 *	  release.
 *	- A slot belongs to the launcher while FREE or STARTING, to its worker
 *	  while RUNNING, and returns to the launcher when the worker marks it
 *	  EXITED from a before_shmem_exit callback (FATAL exits included).  A
 *	  process killed without running callbacks makes the postmaster
 *	  reinitialize shared memory, so no slot outlives its process.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "pulse.h"

/* Refreshes and jobs per worker iteration before it looks at signals again. */
#define WRK_REFRESHES_PER_ITERATION 16
#define WRK_JOBS_PER_ITERATION		16

/* How long the launcher leaves a database alone after its worker was asked to leave. */
#define WRK_STOP_HOLD_MS			10000

/* Back-off after a worker died: 1 s doubling up to this. */
#define WRK_MAX_BACKOFF_MS			60000

/* A worker that ran this long resets the back-off. */
#define WRK_STABLE_MS				60000

/* How long the ProcessUtility hook waits for a worker to leave politely. */
#define WRK_LEAVE_WAIT_MS			2000

/* A database the launcher serves (launcher-local). */
typedef struct WrkDb
{
	Oid			dboid;
	char		name[NAMEDATALEN];
	TimestampTz next_start;		/* no worker before this */
	int			failures;		/* quick deaths in a row */
} WrkDb;

PGDLLEXPORT void pulse_launcher_main(Datum main_arg);
PGDLLEXPORT void pulse_worker_main(Datum main_arg);

/* GUCs */
static char *wrk_database_names = NULL;
static int	wrk_max_workers = 8;
static int	wrk_naptime_ms = 1000;
static int	wrk_launcher_naptime_s = 60;

static ProcessUtility_hook_type wrk_prev_ProcessUtility = NULL;

/* Launcher-local state, in wrk_launcher_cxt (lives as long as the launcher). */
static MemoryContext wrk_launcher_cxt = NULL;
static WrkDb *wrk_dbs = NULL;
static int	wrk_ndbs = 0;
static BackgroundWorkerHandle **wrk_handles = NULL;	/* per slot */
static bool wrk_warned_full = false;

/* ----------------------------------------------------------------
 *		GUCs and shared memory
 * ----------------------------------------------------------------
 */

static bool
wrk_check_database_names(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok;

	if (strcmp(*newval, "*") == 0)
		return true;
	ok = SplitIdentifierString(raw, ',', &names);
	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

/* ----------------------------------------------------------------
 *		Stopping the worker of a database (ProcessUtility hook)
 * ----------------------------------------------------------------
 */

/*
 * Asks the worker of database dbname to leave and waits (bounded) until it
 * has.  Only for the database's owner or a superuser, so that a command
 * bound to fail on permissions cannot be used to stop workers.
 */
static void
wrk_release_database(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	pid_t		pid = 0;
	Latch	   *latch = NULL;
	bool		found = false;
	int			waited = 0;

	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return;

	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pulse_wrk_shared->nslots; i++)
	{
		WrkSlot    *slot = &pulse_wrk_shared->slots[i];

		if ((slot->state == WRK_STARTING || slot->state == WRK_RUNNING) &&
			slot->dboid == dboid)
		{
			slot->stop_requested = true;
			if (slot->state == WRK_RUNNING)
			{
				pid = slot->pid;
				latch = slot->latch;
			}
			found = true;
		}
	}
	LWLockRelease(pulse_wrk_shared->lock);
	if (!found)
		return;
	if (latch)
		SetLatch(latch);

	/* Wait for it to leave; terminate it if it is busy for too long. */
	for (;;)
	{
		bool		gone = true;

		LWLockAcquire(pulse_wrk_shared->lock, LW_SHARED);
		for (int i = 0; i < pulse_wrk_shared->nslots; i++)
		{
			WrkSlot    *slot = &pulse_wrk_shared->slots[i];

			if (slot->state == WRK_RUNNING && slot->dboid == dboid)
				gone = false;
		}
		LWLockRelease(pulse_wrk_shared->lock);
		if (gone)
			break;
		if (waited == WRK_LEAVE_WAIT_MS && pid != 0)
			(void) kill(pid, SIGTERM);
		if (waited >= WRK_LEAVE_WAIT_MS + 5000)
			break;				/* let the command report the connection */
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10 * 1000L);
		waited += 10;
	}
}

static void
wrk_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *dbname = NULL;
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) stmt)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) stmt)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
				if (strcmp(lfirst_node(DefElem, lc)->defname, "tablespace") == 0)
					dbname = ((AlterDatabaseStmt *) stmt)->dbname;
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) stmt)->options)
				if (strcmp(lfirst_node(DefElem, lc)->defname, "template") == 0)
					dbname = defGetString(lfirst_node(DefElem, lc));
			break;
		default:
			break;
	}
	if (dbname != NULL && pulse_wrk_shared != NULL)
		wrk_release_database(dbname);

	if (wrk_prev_ProcessUtility)
		wrk_prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* ----------------------------------------------------------------
 *		Public interface
 * ----------------------------------------------------------------
 */

void
pulse_worker_init(void)
{
	BackgroundWorker bgw;

	DefineCustomStringVariable("pulse.database_names",
							   "Databases that get a pulse worker.",
							   "A comma-separated list of database names (identifier "
							   "syntax: quote names with capitals), or * for every "
							   "database that accepts connections and is not a "
							   "template.  Databases without the pulse extension "
							   "cost one short-lived process per "
							   "pulse.launcher_naptime.",
							   &wrk_database_names,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   wrk_check_database_names, NULL, NULL);

	DefineCustomIntVariable("pulse.max_workers",
							"Maximum number of per-database pulse workers.",
							"Each takes a background worker slot "
							"(max_worker_processes); 0 disables the launcher.",
							&wrk_max_workers,
							8, 0, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pulse.worker_naptime",
							"Time a pulse worker sleeps between two looks for due "
							"aggregates and jobs.",
							"pulse_worker_wake (job submission, create_aggregate) "
							"cuts the sleep short.",
							&wrk_naptime_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pulse.launcher_naptime",
							"Time between two reads of pg_database by the pulse "
							"launcher.",
							"Also the delay before the launcher tries again a "
							"database whose worker found no pulse extension.",
							&wrk_launcher_naptime_s,
							60, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	pulse_worker_shmem_init(wrk_max_workers);
	wrk_prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = wrk_ProcessUtility;

	if (wrk_max_workers == 0)
		return;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "pulse", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pulse_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "pulse launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "pulse launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* ----------------------------------------------------------------
 *		Launcher
 * ----------------------------------------------------------------
 */

/* Is datname named by pulse.database_names? */
static bool
wrk_database_wanted(const char *datname, List *names, bool all)
{
	ListCell   *lc;

	if (all)
		return true;
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), datname) == 0)
			return true;
	return false;
}

static WrkDb *
wrk_find_db(Oid dboid)
{
	for (int i = 0; i < wrk_ndbs; i++)
		if (wrk_dbs[i].dboid == dboid)
			return &wrk_dbs[i];
	return NULL;
}

/*
 * Rebuilds wrk_dbs from pg_database and pulse.database_names, keeping the
 * back-off state of databases already known.  Runs a transaction; caller
 * catches errors.
 */
static void
wrk_scan_databases(void)
{
	char	   *raw = pstrdup(wrk_database_names);
	List	   *names = NIL;
	bool		all = (strcmp(wrk_database_names, "*") == 0);
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	WrkDb	   *dbs;
	int			ndbs = 0;
	int			cap = 16;

	if (!all && !SplitIdentifierString(raw, ',', &names))
		names = NIL;			/* the check hook prevents this */

	dbs = MemoryContextAllocZero(wrk_launcher_cxt, sizeof(WrkDb) * cap);

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		WrkDb	   *old;

		if (!db->datallowconn || db->datistemplate ||
			database_is_invalid_form(db) ||
			!wrk_database_wanted(NameStr(db->datname), names, all))
			continue;
		if (ndbs == cap)
		{
			dbs = repalloc(dbs, sizeof(WrkDb) * cap * 2);
			memset(dbs + cap, 0, sizeof(WrkDb) * cap);
			cap *= 2;
		}
		dbs[ndbs].dboid = db->oid;
		strlcpy(dbs[ndbs].name, NameStr(db->datname), NAMEDATALEN);
		old = wrk_find_db(db->oid);
		if (old != NULL)
		{
			dbs[ndbs].next_start = old->next_start;
			dbs[ndbs].failures = old->failures;
		}
		ndbs++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	if (wrk_dbs != NULL)
		pfree(wrk_dbs);
	wrk_dbs = dbs;
	wrk_ndbs = ndbs;
}

/*
 * Reaps the slots of workers that left or never started, deciding when
 * their database may have a worker again, and asks workers of databases no
 * longer wanted to leave.
 */
static void
wrk_reap_slots(TimestampTz now)
{
	List	   *latches = NIL;
	ListCell   *lc;

	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pulse_wrk_shared->nslots; i++)
	{
		WrkSlot    *slot = &pulse_wrk_shared->slots[i];
		WrkDb	   *db = wrk_find_db(slot->dboid);
		bool		reap = false;
		WrkExit		reason = slot->exit_reason;

		switch (slot->state)
		{
			case WRK_FREE:
				continue;
			case WRK_STARTING:
				if (wrk_handles[i] != NULL)
				{
					pid_t		pid;

					if (GetBackgroundWorkerPid(wrk_handles[i], &pid) == BGWH_STOPPED)
						reap = true;	/* it never claimed the slot */
				}
				else if (TimestampDifferenceExceeds(slot->started, now, WRK_STABLE_MS))
					reap = true;	/* registered by a previous launcher */
				reason = slot->stop_requested ? WRK_EXIT_STOPPED : WRK_EXIT_ERROR;
				break;
			case WRK_RUNNING:
				if (kill(slot->pid, 0) != 0 && errno == ESRCH)
				{
					reap = true;
					reason = WRK_EXIT_ERROR;
				}
				else if (db == NULL && !slot->stop_requested)
				{
					/* database no longer wanted, or dropped */
					slot->stop_requested = true;
					latches = lappend(latches, slot->latch);
				}
				break;
			case WRK_EXITED:
				reap = true;
				break;
		}
		if (!reap)
			continue;

		if (db != NULL)
		{
			int			delay;

			switch (reason)
			{
				case WRK_EXIT_NO_EXTENSION:
					delay = wrk_launcher_naptime_s * 1000;
					db->failures = 0;
					break;
				case WRK_EXIT_STOPPED:
					delay = WRK_STOP_HOLD_MS;
					break;
				default:
					if (TimestampDifferenceExceeds(slot->started, now, WRK_STABLE_MS))
						db->failures = 0;
					delay = Min(1000 << Min(db->failures, 6), WRK_MAX_BACKOFF_MS);
					db->failures++;
					break;
			}
			db->next_start = TimestampTzPlusMilliseconds(now, delay);
		}
		if (wrk_handles[i] != NULL)
		{
			pfree(wrk_handles[i]);
			wrk_handles[i] = NULL;
		}
		memset(slot, 0, sizeof(WrkSlot));
	}
	LWLockRelease(pulse_wrk_shared->lock);

	foreach(lc, latches)
		SetLatch((Latch *) lfirst(lc));
	list_free(latches);
}

/* Registers a worker for db in a free slot, if any; returns false if none. */
static bool
wrk_start_worker(WrkDb *db, TimestampTz now)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcxt;
	int			slotno = -1;
	bool		ok;

	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pulse_wrk_shared->nslots; i++)
	{
		if (pulse_wrk_shared->slots[i].state == WRK_FREE)
		{
			slotno = i;
			memset(&pulse_wrk_shared->slots[i], 0, sizeof(WrkSlot));
			pulse_wrk_shared->slots[i].state = WRK_STARTING;
			pulse_wrk_shared->slots[i].dboid = db->dboid;
			pulse_wrk_shared->slots[i].started = now;
			break;
		}
	}
	LWLockRelease(pulse_wrk_shared->lock);
	if (slotno < 0)
		return false;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pulse", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pulse_worker_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pulse worker for database %s", db->name);
	strlcpy(bgw.bgw_type, "pulse worker", BGW_MAXLEN);
	bgw.bgw_main_arg = Int32GetDatum(slotno);
	memcpy(bgw.bgw_extra, &db->dboid, sizeof(Oid));
	bgw.bgw_notify_pid = MyProcPid;

	oldcxt = MemoryContextSwitchTo(wrk_launcher_cxt);
	ok = RegisterDynamicBackgroundWorker(&bgw, &handle);
	MemoryContextSwitchTo(oldcxt);
	if (!ok)
	{
		LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
		memset(&pulse_wrk_shared->slots[slotno], 0, sizeof(WrkSlot));
		LWLockRelease(pulse_wrk_shared->lock);
		db->next_start = TimestampTzPlusMilliseconds(now, 10000);
		ereport(LOG,
				(errmsg("pulse launcher could not start a worker for database \"%s\"",
						db->name),
				 errhint("Raise max_worker_processes.")));
		return true;
	}
	wrk_handles[slotno] = handle;
	return true;
}

/* Starts workers for the wanted databases that have none and are due. */
static void
wrk_start_workers(TimestampTz now)
{
	for (int i = 0; i < wrk_ndbs; i++)
	{
		WrkDb	   *db = &wrk_dbs[i];
		bool		has_slot = false;

		if (now < db->next_start)
			continue;
		LWLockAcquire(pulse_wrk_shared->lock, LW_SHARED);
		for (int s = 0; s < pulse_wrk_shared->nslots; s++)
			if (pulse_wrk_shared->slots[s].state != WRK_FREE &&
				pulse_wrk_shared->slots[s].dboid == db->dboid)
				has_slot = true;
		LWLockRelease(pulse_wrk_shared->lock);
		if (has_slot)
			continue;
		if (!wrk_start_worker(db, now))
		{
			if (!wrk_warned_full)
				ereport(LOG,
						(errmsg("pulse launcher: pulse.max_workers (%d) reached, database \"%s\" has no worker",
								pulse_wrk_shared->nslots, db->name)));
			wrk_warned_full = true;
			return;
		}
	}
	wrk_warned_full = false;
}

void
pulse_launcher_main(Datum main_arg)
{
	MemoryContext loopcxt;
	TimestampTz next_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* No database: we only read the shared catalog pg_database. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	/* Launcher state lives as long as the launcher. */
	wrk_launcher_cxt = AllocSetContextCreate(TopMemoryContext,
											 "pulse launcher",
											 ALLOCSET_DEFAULT_SIZES);
	loopcxt = AllocSetContextCreate(TopMemoryContext,
									"pulse launcher loop",
									ALLOCSET_DEFAULT_SIZES);
	wrk_handles = MemoryContextAllocZero(wrk_launcher_cxt,
										 sizeof(BackgroundWorkerHandle *) *
										 pulse_wrk_shared->nslots);

	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	pulse_wrk_shared->launcher_pid = MyProcPid;
	pulse_wrk_shared->launcher_latch = &MyProc->procLatch;
	pulse_wrk_shared->rescan = true;
	LWLockRelease(pulse_wrk_shared->lock);

	for (;;)
	{
		TimestampTz now;
		Oid			requests[WRK_MAX_REQUESTS];
		int			nrequests;
		bool		rescan;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(loopcxt);
		MemoryContextSwitchTo(loopcxt);

		rescan = false;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			rescan = true;
		}

		LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
		nrequests = pulse_wrk_shared->nrequests;
		memcpy(requests, pulse_wrk_shared->requests, sizeof(Oid) * nrequests);
		pulse_wrk_shared->nrequests = 0;
		if (pulse_wrk_shared->rescan || nrequests > 0)
			rescan = true;
		pulse_wrk_shared->rescan = false;
		LWLockRelease(pulse_wrk_shared->lock);

		now = GetCurrentTimestamp();
		if (rescan || now >= next_scan)
		{
			PG_TRY();
			{
				wrk_scan_databases();
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				edata = pulse_catch_and_abort(loopcxt);
				ereport(LOG,
						(errmsg("pulse launcher could not read pg_database: %s",
								edata->message)));
			}
			PG_END_TRY();
			MemoryContextSwitchTo(loopcxt);
			next_scan = TimestampTzPlusMilliseconds(now, wrk_launcher_naptime_s * 1000);
		}

		/* pulse_worker_wake asked for these: no back-off. */
		for (int i = 0; i < nrequests; i++)
		{
			WrkDb	   *db = wrk_find_db(requests[i]);

			if (db != NULL)
				db->next_start = 0;
		}

		wrk_reap_slots(now);
		wrk_start_workers(now);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ----------------------------------------------------------------
 *		Per-database worker
 * ----------------------------------------------------------------
 */

static int	wrk_my_slot = -1;

/* before_shmem_exit callback: hands the slot back to the launcher. */
static void
wrk_worker_exit(int code, Datum arg)
{
	WrkSlot    *slot = &pulse_wrk_shared->slots[DatumGetInt32(arg)];
	Latch	   *launcher;

	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	if (slot->state == WRK_RUNNING && slot->pid == MyProcPid)
	{
		if (slot->stop_requested)
			slot->exit_reason = WRK_EXIT_STOPPED;
		slot->state = WRK_EXITED;
		slot->pid = 0;
		slot->latch = NULL;
	}
	launcher = pulse_wrk_shared->launcher_latch;
	LWLockRelease(pulse_wrk_shared->lock);
	if (launcher)
		SetLatch(launcher);
}

/* Leaves quietly, telling the launcher why. */
static void
wrk_leave(WrkExit reason)
{
	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	pulse_wrk_shared->slots[wrk_my_slot].exit_reason = reason;
	LWLockRelease(pulse_wrk_shared->lock);
	proc_exit(0);
}

static bool
wrk_stop_requested(void)
{
	bool		stop;

	LWLockAcquire(pulse_wrk_shared->lock, LW_SHARED);
	stop = pulse_wrk_shared->slots[wrk_my_slot].stop_requested;
	LWLockRelease(pulse_wrk_shared->lock);
	return stop;
}

/*
 * Is pulse installed here, at a version that has the aggregate and job
 * tables?  Runs a transaction; caller catches errors.
 */
static bool
wrk_extension_ready(void)
{
	bool		ready = false;
	Oid			nspid;

	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("pulse", true)))
	{
		nspid = get_namespace_oid("pulse", true);
		ready = OidIsValid(nspid) &&
			OidIsValid(get_relname_relid("aggregate_defs", nspid));
	}
	CommitTransactionCommand();
	return ready;
}

void
pulse_worker_main(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	bool		claimed = false;
	MemoryContext loopcxt;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* Claim the slot the launcher reserved; a stale registration leaves. */
	if (pulse_wrk_shared == NULL || slotno < 0 || slotno >= pulse_wrk_shared->nslots)
		proc_exit(0);
	LWLockAcquire(pulse_wrk_shared->lock, LW_EXCLUSIVE);
	{
		WrkSlot    *slot = &pulse_wrk_shared->slots[slotno];

		if (slot->state == WRK_STARTING && slot->dboid == dboid &&
			!slot->stop_requested)
		{
			slot->state = WRK_RUNNING;
			slot->pid = MyProcPid;
			slot->latch = &MyProc->procLatch;
			slot->exit_reason = WRK_EXIT_ERROR;
			claimed = true;
		}
	}
	LWLockRelease(pulse_wrk_shared->lock);
	if (!claimed)
		proc_exit(0);
	wrk_my_slot = slotno;
	before_shmem_exit(wrk_worker_exit, Int32GetDatum(slotno));

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pulse worker");

	/* Per-iteration memory, reset at the top of every iteration. */
	loopcxt = AllocSetContextCreate(TopMemoryContext, "pulse worker loop",
									ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		volatile bool busy = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (wrk_stop_requested())
			wrk_leave(WRK_EXIT_STOPPED);

		MemoryContextReset(loopcxt);
		MemoryContextSwitchTo(loopcxt);

		PG_TRY();
		{
			int			refreshed;
			int			jobs;

			if (!wrk_extension_ready())
			{
				ereport(DEBUG1,
						(errmsg("pulse worker: no pulse extension (1.1 or later) in database %u, leaving",
								dboid)));
				wrk_leave(WRK_EXIT_NO_EXTENSION);
			}

			/*
			 * Each unit commits its own transactions, which leaves us in
			 * TopMemoryContext: come back to the loop context after each.
			 */
			MemoryContextSwitchTo(loopcxt);
			refreshed = pulse_aggregates_refresh_due(WRK_REFRESHES_PER_ITERATION);
			MemoryContextSwitchTo(loopcxt);
			jobs = pulse_jobs_run_due(WRK_JOBS_PER_ITERATION);
			MemoryContextSwitchTo(loopcxt);
			busy = (refreshed >= WRK_REFRESHES_PER_ITERATION ||
					jobs >= WRK_JOBS_PER_ITERATION);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			edata = pulse_catch_and_abort(loopcxt);
			ereport(LOG,
					(errmsg("pulse worker: %s", edata->message)));
			busy = false;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(loopcxt);

		if (!busy)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wrk_naptime_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
