/*-------------------------------------------------------------------------
 *
 * aggregate_refresh.c
 *		One refresh of a materialized aggregate (full, incremental by keys,
 *		or by deltas), and the worker's entry point,
 *		pulse_aggregates_refresh_due.
 *
 * Locking and consistency rules:
 *	- One refresh of an aggregate at a time: a refresh locks the aggregate's
 *	  pulse.aggregate_defs row FOR NO KEY UPDATE first (the worker with SKIP
 *	  LOCKED, so it never queues behind a manual refresh).
 *	- A refresh changes the aggregate table with plain DELETE and
 *	  INSERT ... ON CONFLICT only (RowExclusiveLock): readers never wait, and
 *	  MVCC shows them the table as of before or after a refresh, never half.
 *	- The log is consumed by a DELETE in the refresh's own transaction, and
 *	  the groups are recomputed with the same snapshot (agg_snapshot, taken
 *	  after the definition's row lock): the source rows a refresh reads are
 *	  exactly those whose log rows it consumes, which deltas, applied once
 *	  each, require.  So a log row disappears only with the commit of a
 *	  refresh that saw its change, and a crash or an error anywhere leaves
 *	  both the table and the log as they were.  A change that commits while
 *	  a refresh runs keeps its log row and is applied by the next refresh.
 *	- The worker runs each refresh in a transaction of its own; a failure
 *	  is logged and recorded in a new transaction, never thrown.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "aggregate_int.h"
#include "pulse.h"
#include "support.h"

/*
 * Consumes the whole change log of def (full refresh).  Caller is connected
 * to SPI, in the refresh's transaction.
 */
static void
agg_consume_all(AggDef *def)
{
	agg_exec0(psprintf("DELETE FROM %s", agg_pulse_object(def->id, "log")));
}

/*
 * Consumes the change log of an incremental aggregate and collects the
 * changed keys.  Returns false when the refresh must be full instead (a
 * TRUNCATE was logged, or too many keys changed).
 */
static bool
agg_consume_keys(AggDef *def, AggKeys *keys)
{
	StringInfoData sql;
	ListCell   *lc;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bool		full;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH d AS (DELETE FROM %s RETURNING *) "
					 "SELECT count(*), coalesce(bool_or(d.__pulse_full), false)",
					 agg_pulse_object(def->id, "log"));
	foreach(lc, def->keys)
	{
		const char *k = quote_identifier((char *) lfirst(lc));

		appendStringInfo(&sql,
						 ", array_agg(DISTINCT d.%s) FILTER (WHERE d.%s IS NOT NULL)"
						 ", coalesce(bool_or(d.%s IS NULL), false)",
						 k, k, k);
	}
	appendStringInfoString(&sql, " FROM d");
	agg_exec0(sql.data);

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	keys->nlogged = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	full = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	keys->nkeys = list_length(def->keys);
	keys->arrays = palloc0(sizeof(Datum) * keys->nkeys);
	keys->array_null = palloc0(sizeof(bool) * keys->nkeys);
	keys->has_null = palloc0(sizeof(bool) * keys->nkeys);
	keys->array_types = palloc0(sizeof(Oid) * keys->nkeys);
	for (int i = 0; i < keys->nkeys; i++)
	{
		Datum		arr = SPI_getbinval(tup, desc, 3 + 2 * i, &isnull);

		keys->array_types[i] = SPI_gettypeid(desc, 3 + 2 * i);
		keys->array_null[i] = isnull;
		if (!isnull)
		{
			ArrayType  *a = DatumGetArrayTypePCopy(arr);

			keys->arrays[i] = PointerGetDatum(a);
			if (ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) > AGG_MAX_INCREMENTAL_KEYS)
				full = true;
		}
		keys->has_null[i] = DatumGetBool(SPI_getbinval(tup, desc, 4 + 2 * i,
													   &isnull));
	}
	return !full;
}

/*
 * Refreshes aggregate run->id: consumes its log, recomputes, bumps its tag
 * and records the run, all in the caller's (sub)transaction, which the
 * caller aborts on error.  Caller is connected to SPI.  Returns false when
 * the aggregate is gone, or is being refreshed by someone else and
 * lock == AGG_LOCK_SKIP.
 */
bool
agg_refresh(AggRun *run, bool force_full, AggLock lock)
{
	AggDef	   *def;
	char	   *name;
	AggKeys		keys;
	AggDelta   *delta = NULL;
	SPITupleTable *tt = NULL;
	uint64		ntuples = 0;
	Snapshot	snap;

	def = agg_load(run->id, lock);
	if (def == NULL)
		return false;
	name = agg_rel_name(def->relid);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of aggregate %d no longer exists", def->id)));

	run->full = force_full || !def->incremental;
	if (!run->full)
		delta = agg_delta_load(def);

	/* after the lock (and the analysis' locks): see agg_snapshot */
	snap = RegisterSnapshot(GetTransactionSnapshot());
	agg_snapshot = snap;
	PG_TRY();
	{
		if (run->full)
			agg_consume_all(def);
		else if (delta != NULL)
		{
			if (!agg_consume_delta(def, delta, &tt, &ntuples))
				run->full = true;
		}
		else if (!agg_consume_keys(def, &keys))
			run->full = true;

		if (run->full)
			run->rows = agg_apply(def, name, NULL);
		else if (delta != NULL)
			run->rows = ntuples > 0 ?
				agg_apply_delta(def, name, delta, tt, ntuples) : 0;
		else if (keys.nlogged > 0)
			run->rows = agg_apply(def, name, &keys);
		else
			run->rows = 0;
	}
	PG_FINALLY();
	{
		agg_snapshot = NULL;
	}
	PG_END_TRY();
	UnregisterSnapshot(snap);

	agg_bump_tag(name);
	agg_record_run(run, NULL);
	return true;
}

/* What agg_list_due_work is asked for and finds. */
typedef struct AggDueList
{
	MemoryContext cxt;			/* where the list goes (outlives the xact) */
	int			max_refreshes;
	List	   *due;
} AggDueList;

/* agg_list_due's transaction. */
static void
agg_list_due_work(void *arg)
{
	AggDueList *dl = (AggDueList *) arg;
	uint64		n;
	int32	   *ids;
	bool	   *tracked;

	n = agg_exec0("SELECT id, mode = 'incremental' OR tracked "
				  "FROM pulse.aggregate_defs "
				  "WHERE schedule IS NULL AND (last_attempt IS NULL "
				  "OR last_attempt + refresh_interval <= now()) "
				  "ORDER BY last_attempt NULLS FIRST, id");
	ids = palloc(sizeof(int32) * (n + 1));
	tracked = palloc(sizeof(bool) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
		tracked[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 2, &isnull));
	}
	for (uint64 i = 0; i < n && list_length(dl->due) < dl->max_refreshes; i++)
	{
		MemoryContext oldcxt;

		if (tracked[i] &&
			agg_exec0(psprintf("SELECT FROM %s LIMIT 1",
							   agg_pulse_object(ids[i], "log"))) == 0)
			continue;
		oldcxt = MemoryContextSwitchTo(dl->cxt);
		dl->due = lappend_int(dl->due, ids[i]);
		MemoryContextSwitchTo(oldcxt);
	}
}

/*
 * The ids of the aggregates due for a refresh: not scheduled with pg_cron,
 * last attempted at least their interval ago, and with pending changes (or
 * untracked).  Runs its own transaction; never throws.
 */
static List *
agg_list_due(int max_refreshes)
{
	AggDueList	dl;
	ErrorData  *edata;

	dl.cxt = CurrentMemoryContext;
	dl.max_refreshes = max_refreshes;
	dl.due = NIL;
	edata = pulse_run_in_xact(agg_list_due_work, &dl);
	if (edata != NULL)
	{
		ereport(LOG,
				(errmsg("pulse worker could not list the aggregates due for a refresh: %s",
						edata->message)));
		FreeErrorData(edata);
		return NIL;
	}
	return dl.due;
}

/* A run and the error it failed with, for agg_record_failure_work. */
typedef struct AggFailure
{
	AggRun	   *run;
	const char *message;
} AggFailure;

static void
agg_record_failure_work(void *arg)
{
	AggFailure *f = (AggFailure *) arg;

	agg_record_run(f->run, f->message);
}

/* agg_refresh_unit's transaction. */
static void
agg_refresh_work(void *arg)
{
	AggRun	   *run = (AggRun *) arg;

	pgstat_report_activity(STATE_RUNNING,
						   psprintf("pulse: refresh aggregate %d", run->id));
	(void) agg_refresh(run, false, AGG_LOCK_SKIP);
}

/*
 * One unit of work of the worker: refreshes aggregate id in a transaction of
 * its own.  A failure is logged and recorded (in a transaction of its own),
 * never thrown.
 */
static void
agg_refresh_unit(int32 id)
{
	AggRun		run;
	AggFailure	failure;
	ErrorData  *edata;

	memset(&run, 0, sizeof(run));
	run.id = id;
	run.started = GetCurrentTimestamp();

	edata = pulse_run_in_xact(agg_refresh_work, &run);
	if (edata != NULL)
	{
		ErrorData  *edata2;

		ereport(LOG,
				(errmsg("pulse worker: refresh of aggregate %d failed: %s",
						id, edata->message)));
		failure.run = &run;
		failure.message = edata->message;
		edata2 = pulse_run_in_xact(agg_record_failure_work, &failure);
		if (edata2 != NULL)
		{
			ereport(LOG,
					(errmsg("pulse worker could not record the failed refresh of aggregate %d: %s",
							id, edata2->message)));
			FreeErrorData(edata2);
		}
		FreeErrorData(edata);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * pulse_aggregates_refresh_due
 *		Refreshes up to max_refreshes due aggregates of the current database,
 *		each in its own transaction.  Called by the worker outside any
 *		transaction; never throws (errors are logged and recorded).  Returns
 *		the number of refreshes attempted.
 */
int
pulse_aggregates_refresh_due(int max_refreshes)
{
	List	   *due = agg_list_due(max_refreshes);
	ListCell   *lc;

	foreach(lc, due)
	{
		CHECK_FOR_INTERRUPTS();
		agg_refresh_unit(lfirst_int(lc));
	}
	return list_length(due);
}
