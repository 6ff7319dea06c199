/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *		Materialized aggregates: tables holding the result of a
 *		SELECT ... GROUP BY query, kept fresh by the pulse workers (worker.c)
 *		or on a pg_cron schedule, incrementally where the query allows.
 *		This file holds the SQL-callable functions: create, refresh, drop
 *		and the event trigger's forget.
 *
 * pulse.create_aggregate(name, query, refresh, schedule) analyses the query
 * with the server's parser and creates, for aggregate number N (the id of
 * its row in pulse.aggregate_defs):
 *
 *	- the aggregate table `name`, filled from the query, owned by its
 *	  creator, with a unique index NULLS NOT DISTINCT on the group keys;
 *	- pulse.aggregate_N_log, the change log;
 *	- pulse.aggregate_N_capture(), a SECURITY DEFINER trigger function, and
 *	  AFTER ... FOR EACH STATEMENT triggers on the source tables that call it;
 *	- with a schedule, a pg_cron job running the full refresh.
 *
 * drop_aggregate (or a plain DROP TABLE, through the sql_drop event trigger)
 * removes all of it; DROP EXTENSION pulse removes all but the table (the
 * log, the function and the triggers depend on the extension).  Fills and
 * refreshes run with work_mem = pulse.refresh_work_mem.
 *
 * A query is refreshed in incremental mode (only the groups its sources'
 * writes touched; by delta maintenance when its aggregates allow) or in
 * full mode (aggregate_analyze.c says which and why).  Either way a refresh
 * computes the difference set-based and writes only the changed groups
 * (aggregate_apply.c).  aggregate_int.h lists the files and what each does.
 *
 * Locking:
 *	- create_aggregate creates the triggers before it fills the table:
 *	  CREATE TRIGGER's ShareRowExclusiveLock on the sources, held until
 *	  commit, keeps writers out while the table is filled.
 *	- refresh_aggregate runs the refresh in a subtransaction: a failure
 *	  leaves the table and the log as they were and is recorded; the
 *	  refresh's own rules are in aggregate_refresh.c.
 *	- drop_aggregate locks the definition row as a refresh does, so it waits
 *	  for a refresh under way.
 *	- The query runs as the owner of the aggregate table, with the
 *	  search_path of its creation, as a security-restricted operation (like
 *	  REFRESH MATERIALIZED VIEW); the log and the bookkeeping are handled as
 *	  the caller (the worker runs as the bootstrap superuser).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "aggregate_int.h"
#include "worker_shmem.h"

PG_FUNCTION_INFO_V1(pulse_create_aggregate);
PG_FUNCTION_INFO_V1(pulse_refresh_aggregate);
PG_FUNCTION_INFO_V1(pulse_drop_aggregate);
PG_FUNCTION_INFO_V1(pulse_aggregate_forget);

/* Interval as microseconds, months counted as 30 days (sign test only). */
static int64
agg_interval_usecs(Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/*
 * Inserts the definition of aggregate id (table relid, analysed as shape)
 * into pulse.aggregate_defs, with the current search_path.  Caller is
 * connected to SPI.
 */
static void
agg_register(int32 id, Oid relid, AggShape *shape, Interval *refresh,
			 const char *schedule, TimestampTz created)
{
	Oid			argtypes[11] = {INT4OID, OIDOID, TEXTOID, TEXTOID, TEXTOID,
		BOOLOID, TEXTARRAYOID, TEXTARRAYOID, INTERVALOID, TEXTOID,
	TIMESTAMPTZOID};
	Datum		values[11];
	char		nulls[12] = "           ";

	values[0] = Int32GetDatum(id);
	values[1] = ObjectIdGetDatum(relid);
	values[2] = CStringGetTextDatum(shape->stmt);
	values[3] = CStringGetTextDatum(GetConfigOption("search_path", false, false));
	values[4] = CStringGetTextDatum(shape->incremental ? "incremental" : "full");
	values[5] = BoolGetDatum(shape->tracked);
	values[6] = agg_list_to_text_array(shape->keys);
	values[7] = agg_list_to_text_array(shape->values);
	values[8] = IntervalPGetDatum(refresh);
	values[9] = schedule ? CStringGetTextDatum(schedule) : (Datum) 0;
	values[10] = TimestampTzGetDatum(created);
	nulls[9] = schedule ? ' ' : 'n';
	agg_exec("INSERT INTO pulse.aggregate_defs (id, relid, query, search_path, mode, "
			 "tracked, key_columns, value_columns, refresh_interval, schedule, created_at) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
			 11, argtypes, values, nulls);
}

/*
 * Registers the full refresh of aggregate id (table qname) as a pg_cron job
 * on schedule, in this database, and notes the job in its definition.
 * Caller is connected to SPI; pg_cron is installed here.
 */
static void
agg_schedule(int32 id, const char *qname, const char *schedule)
{
	char	   *command = psprintf("SELECT pulse.refresh_aggregate(%s, true)",
								   quote_literal_cstr(qname));
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		isnull;

	values[0] = CStringGetTextDatum(psprintf("pulse_aggregate:%s", qname));
	values[1] = CStringGetTextDatum(schedule);
	values[2] = CStringGetTextDatum(command);
	/* name this database explicitly where pg_cron can (1.4 and later) */
	if (agg_cron_function_exists("cron.schedule_in_database(text,text,text,text,text,boolean)"))
		agg_exec("SELECT cron.schedule_in_database($1, $2, $3, current_database())",
				 3, argtypes, values, NULL);
	else
		agg_exec("SELECT cron.schedule($1, $2, $3)", 3, argtypes, values, NULL);
	argtypes[1] = INT8OID;
	values[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							  1, &isnull);
	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(id);
	agg_exec("UPDATE pulse.aggregate_defs SET cron_jobid = $2 WHERE id = $1",
			 2, argtypes, values, NULL);
}

/*
 * pulse.create_aggregate(name text, query text,
 *						  refresh interval DEFAULT '10 seconds',
 *						  schedule text DEFAULT NULL) RETURNS text
 *
 * Creates and fills the aggregate table; returns its mode, 'incremental' or
 * 'full'.  Runs in the caller's transaction: an error undoes everything.
 */
Datum
pulse_create_aggregate(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *query;
	Interval   *refresh;
	char	   *schedule = NULL;
	RangeVar   *rv;
	Oid			nspid;
	Oid			relid;
	char	   *qname;
	AggShape	shape;
	int32		id;
	uint64		filled;
	AggRun		run;
	bool		isnull;
	int			nestlevel;
	Oid			argtypes[1];
	Datum		values[1];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, query and refresh of an aggregate must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	refresh = PG_GETARG_INTERVAL_P(2);
	if (!PG_ARGISNULL(3))
		schedule = text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (agg_interval_usecs(refresh) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refresh interval of an aggregate must be positive")));

	if (schedule != NULL && !OidIsValid(get_extension_oid("pg_cron", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a schedule needs the pg_cron extension in this database"),
				 errhint("Run CREATE EXTENSION pg_cron in the database named by cron.database_name, "
						 "or pass schedule => NULL to have the pulse workers refresh the aggregate every refresh interval.")));

	/* Where the table goes; it must not exist yet. */
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	nspid = RangeVarGetCreationNamespace(rv);
	if (isAnyTempNamespace(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("an aggregate cannot be a temporary table")));
	qname = quote_qualified_identifier(get_namespace_name(nspid), rv->relname);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	relid = get_relname_relid(rv->relname, nspid);
	if (OidIsValid(relid))
	{
		argtypes[0] = OIDOID;
		values[0] = ObjectIdGetDatum(relid);
		if (agg_exec("SELECT 1 FROM pulse.aggregate_defs WHERE relid = $1",
					 1, argtypes, values, NULL) == 1)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("aggregate \"%s\" already exists", qname)));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", qname)));
	}

	agg_analyze(query, &shape);
	if (!shape.incremental)
		ereport(NOTICE,
				(errmsg("aggregate %s will be refreshed in full mode", qname),
				 errdetail("Incremental refresh is not possible because %s.",
						   shape.why_full)));

	agg_exec0("SELECT nextval('pulse.aggregate_defs_id_seq')::int4");
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));

	/* Triggers first: their lock keeps writers out until we commit. */
	agg_create_capture(id, &shape);

	run.id = id;
	run.full = true;
	run.started = GetCurrentTimestamp();
	nestlevel = NewGUCNestLevel();
	agg_set_work_mem();
	filled = agg_exec0(psprintf("CREATE TABLE %s AS %s\n", qname, shape.stmt));
	AtEOXact_GUC(false, nestlevel);
	agg_exec0(psprintf("CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT",
					   qname, agg_column_list(shape.keys, "")));
	run.rows = (int64) filled;
	relid = get_relname_relid(rv->relname, nspid);

	/*
	 * A transaction-wide snapshot may predate writes that committed before
	 * the triggers existed: have the worker recompute everything once.
	 */
	if (IsolationUsesXactSnapshot())
		agg_exec0(psprintf("INSERT INTO %s (__pulse_full) VALUES (true)",
						   agg_pulse_object(id, "log")));

	agg_register(id, relid, &shape, refresh, schedule, run.started);
	if (schedule != NULL)
		agg_schedule(id, qname, schedule);

	agg_bump_tag(qname);
	agg_record_run(&run, NULL);

	SPI_finish();

	/* Make sure a worker serves this database. */
	pulse_worker_wake(MyDatabaseId);

	PG_RETURN_TEXT_P(cstring_to_text(shape.incremental ? "incremental" : "full"));
}

/*
 * pulse.refresh_aggregate(name text, full boolean DEFAULT false) RETURNS bigint
 *
 * Refreshes the aggregate now (incrementally unless full or its mode says
 * otherwise) and returns the number of rows of its table that changed.  A
 * refresh that fails leaves the table as it was, is recorded in
 * pulse.aggregate_runs and in the aggregate's last_error, raises a WARNING
 * with the error's SQLSTATE and returns NULL.  Query cancel is not caught.
 */
Datum
pulse_refresh_aggregate(PG_FUNCTION_ARGS)
{
	text	   *name;
	bool		full;
	Oid			relid;
	AggRun		run;
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *failure = NULL;
	bool		found = true;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("aggregate name must not be null")));
	name = PG_GETARG_TEXT_PP(0);
	full = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);

	memset(&run, 0, sizeof(run));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	run.id = agg_resolve(name, &relid);
	SPI_finish();
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	run.started = GetCurrentTimestamp();

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		found = agg_refresh(&run, full, AGG_LOCK_WAIT);
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		failure = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (failure->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(failure);
	}
	PG_END_TRY();

	if (failure != NULL)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		agg_record_run(&run, failure->message);
		SPI_finish();
		ereport(WARNING,
				(errcode(failure->sqlerrcode),
				 errmsg("refresh of aggregate \"%s\" failed: %s",
						text_to_cstring(name), failure->message),
				 errhint("The aggregate keeps its previous contents; the error is in pulse.aggregate_runs.")));
		PG_RETURN_NULL();
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("aggregate \"%s\" does not exist", text_to_cstring(name))));
	PG_RETURN_INT64(run.rows);
}

/*
 * pulse.drop_aggregate(name text) RETURNS void
 *
 * Drops the aggregate table and everything pulse keeps for it (triggers on
 * the sources, log, pg_cron job, definition and runs).
 */
Datum
pulse_drop_aggregate(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int32		id;
	AggDef	   *def;
	char	   *qname;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("aggregate name must not be null")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	id = agg_resolve(PG_GETARG_TEXT_PP(0), &relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	def = agg_load(id, AGG_LOCK_WAIT);
	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("aggregate \"%s\" does not exist",
						text_to_cstring(PG_GETARG_TEXT_PP(0)))));
	qname = agg_rel_name(relid);
	agg_forget(def);
	agg_exec0(psprintf("DROP TABLE %s", qname));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * pulse._aggregate_forget(relid oid) RETURNS void
 *
 * Called by the sql_drop event trigger for every dropped table: when it was
 * an aggregate's, removes what pulse kept for it.
 */
Datum
pulse_aggregate_forget(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (agg_exec("SELECT id FROM pulse.aggregate_defs WHERE relid = $1",
				 1, argtypes, values, NULL) == 1)
	{
		bool		isnull;
		int32		id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc,
													 1, &isnull));
		AggDef	   *def = agg_load(id, AGG_LOCK_WAIT);

		if (def != NULL)
			agg_forget(def);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
