/*-------------------------------------------------------------------------
 *
 * pulse.h
 *		Shared declarations of the pulse extension, grouped by the file that
 *		defines them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_H
#define PULSE_H

#include "postgres.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/array.h"

/*
 * Files that depend on nothing else of pulse, each with a header of its own:
 * support.c (acting as a role, a worker's catch-and-abort), guc.c (the
 * shared GUCs), worker_shmem.c (the workers' shared memory and wake-up).
 */
#include "guc_vars.h"
#include "support.h"
#include "worker_shmem.h"

/* fingerprint.c */

/*
 * Fingerprint of a query as 16 lowercase hex digits plus the terminating
 * NUL.  Raises 42601 on invalid SQL.
 */
#define PULSE_FINGERPRINT_LEN 16
extern void pulse_fingerprint_text(const char *query,
								   char out[PULSE_FINGERPRINT_LEN + 1]);
extern uint64 pulse_fingerprint_u64(const char *query);

/* cursor.c */

/*
 * One sort-key value of a cursor: NULL, or the bytes of the value (page.c
 * stores the type's binary send form, which may contain NUL bytes).
 */
typedef struct PulseCursorKey
{
	bool		isnull;
	char	   *text;			/* palloc'd value bytes; NULL when isnull */
	int			len;			/* number of bytes at text */
} PulseCursorKey;

/* What a cursor says once its signature and binding have been checked. */
typedef struct PulseCursor
{
	bool		backward;		/* true: page before the keys */
	int			nkeys;
	PulseCursorKey *keys;
} PulseCursor;

/*
 * The binding a cursor is valid for: the query's fingerprint, the order, the
 * bound arguments and the tenant.  Hashed to 8 bytes inside the token.
 */
extern void pulse_cursor_binding(const char *fingerprint, const char *order_by,
								 const char *args_text, const char *tenant,
								 uint8 out[8]);
extern char *pulse_cursor_encode(const uint8 binding[8], bool backward,
								 int nkeys, const PulseCursorKey *keys);
extern void pulse_cursor_decode(const char *token, const uint8 binding[8],
								int expected_nkeys, PulseCursor *out);

/* keyed_tags.c */

/*
 * Checks the key columns keys (text[]) of relid tracked under tag: columns of
 * relid, of a type that can key cache tags; raises otherwise.  Returns their
 * names (palloc'd C strings) without duplicates, in the order given.
 */
extern List *pulse_keyed_check_columns(Oid relid, const char *tag,
									   ArrayType *keys);

/* worker.c */

/*
 * Defines the worker GUCs and, when loaded from shared_preload_libraries,
 * registers the launcher.  Called from _PG_init.
 */
extern void pulse_worker_init(void);

/* aggregate_refresh.c */

/*
 * Refreshes up to max_refreshes due materialized aggregates of the current
 * database (pending changes and older than their refresh interval; not
 * scheduled with pg_cron).  Called by the per-database worker outside any
 * transaction; runs each refresh in a transaction of its own and never
 * throws: a failure is logged and recorded in pulse.aggregate_runs.
 * Returns the number of refreshes attempted.
 */
extern int	pulse_aggregates_refresh_due(int max_refreshes);

/* jobs.c */

/* Defines the job GUCs (pulse.job_max_attempts).  Called from _PG_init. */
extern void pulse_jobs_init(void);

/*
 * Runs at most max_jobs due jobs of the current database.  Called by the
 * per-database worker outside any transaction; starts and commits its own
 * transactions, one per state change, and never throws: a failing job is
 * recorded as failed (or dead) and the next one runs.  Returns the number of
 * jobs it ran.
 */
extern int	pulse_jobs_run_due(int max_jobs);

#endif							/* PULSE_H */
