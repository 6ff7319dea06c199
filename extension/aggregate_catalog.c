/*-------------------------------------------------------------------------
 *
 * aggregate_catalog.c
 *		The bookkeeping of the materialized aggregates: their definitions in
 *		pulse.aggregate_defs (resolving a name, loading and locking a
 *		definition, forgetting one with everything it owns), their runs in
 *		pulse.aggregate_runs, and their cache tags.
 *
 * Locking:
 *	- agg_load with AGG_LOCK_WAIT or AGG_LOCK_SKIP locks the definition row
 *	  FOR NO KEY UPDATE until the end of the transaction: this is the lock
 *	  that makes refreshes (and a drop) of one aggregate run one at a time.
 *	- agg_record_run writes the run and the definition's last_* columns in
 *	  the caller's transaction; the caller holds the definition's row lock
 *	  or records a failure after its refresh was rolled back.
 *	- Every function here is called connected to SPI, as the caller.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/builtins.h"
#include "utils/regproc.h"

#include "aggregate_int.h"

/* Runs kept in pulse.aggregate_runs per aggregate; older ones are deleted. */
#define AGG_RUNS_KEPT				200

/*
 * The id of the aggregate named name (as the user spells a table name), and
 * its table's OID.  Raises 42704 when there is no such aggregate.  Caller is
 * connected to SPI.
 */
int32
agg_resolve(text *name, Oid *relid)
{
	char	   *cname = text_to_cstring(name);
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(cname));
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	bool		isnull;

	*relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(*relid))
	{
		values[0] = ObjectIdGetDatum(*relid);
		if (agg_exec("SELECT id FROM pulse.aggregate_defs WHERE relid = $1",
					 1, argtypes, values, NULL) == 1)
			return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1,
											   &isnull));
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("aggregate \"%s\" does not exist", cname),
			 errhint("pulse.aggregates lists the materialized aggregates of this database.")));
	return 0;					/* keep compiler quiet */
}

/*
 * Reads (and locks, for a refresh or a drop) the definition of aggregate id.
 * Returns NULL when it is gone, or locked by someone else under
 * AGG_LOCK_SKIP.  Caller is connected to SPI; the result lives in the SPI
 * procedure context.
 */
AggDef *
agg_load(int32 id, AggLock lock)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	HeapTuple	tup;
	TupleDesc	desc;
	AggDef	   *def;
	bool		isnull;
	Datum		d;

	if (agg_exec(psprintf("SELECT relid, query, search_path, mode = 'incremental', "
						  "tracked, key_columns, value_columns, cron_jobid "
						  "FROM pulse.aggregate_defs WHERE id = $1 "
						  "FOR NO KEY UPDATE%s",
						  lock == AGG_LOCK_SKIP ? " SKIP LOCKED" : ""),
				 1, argtypes, values, NULL) != 1)
		return NULL;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	def = palloc0(sizeof(AggDef));
	def->id = id;
	def->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	def->query = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	def->search_path = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
	def->incremental = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	def->tracked = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	def->keys = agg_text_array_to_list(SPI_getbinval(tup, desc, 6, &isnull));
	def->values = agg_text_array_to_list(SPI_getbinval(tup, desc, 7, &isnull));
	d = SPI_getbinval(tup, desc, 8, &isnull);
	def->has_cron_job = !isnull;
	def->cron_jobid = isnull ? 0 : DatumGetInt64(d);
	return def;
}

/* Does the function named by signature (regprocedure syntax) exist? */
bool
agg_cron_function_exists(const char *signature)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(signature)};
	bool		isnull;

	agg_exec("SELECT to_regprocedure($1) IS NOT NULL", 1, argtypes, values, NULL);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Removes everything aggregate def owns except its table: triggers, capture
 * function, log, pg_cron job and definition (its runs go with it).  Caller
 * is connected to SPI.
 */
void
agg_forget(AggDef *def)
{
	char	   *capture = agg_pulse_object(def->id, "capture");
	Oid			argtypes[1];
	Datum		values[1];
	uint64		ntrig;
	char	  **drops;

	argtypes[0] = TEXTOID;
	values[0] = CStringGetTextDatum(psprintf("%s()", capture));
	ntrig = agg_exec("SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) "
					 "FROM pg_catalog.pg_trigger t "
					 "WHERE t.tgfoid = to_regprocedure($1)",
					 1, argtypes, values, NULL);
	drops = palloc(sizeof(char *) * (ntrig + 1));
	for (uint64 i = 0; i < ntrig; i++)
		drops[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	for (uint64 i = 0; i < ntrig; i++)
		agg_exec0(drops[i]);

	if (agg_exec("SELECT 1 WHERE to_regprocedure($1) IS NOT NULL",
				 1, argtypes, values, NULL) == 1)
		agg_exec0(psprintf("DROP FUNCTION %s()", capture));
	values[0] = CStringGetTextDatum(agg_pulse_object(def->id, "log"));
	if (agg_exec("SELECT 1 WHERE to_regclass($1) IS NOT NULL",
				 1, argtypes, values, NULL) == 1)
		agg_exec0(psprintf("DROP TABLE %s", agg_pulse_object(def->id, "log")));

	if (def->has_cron_job &&
		get_extension_oid("pg_cron", true) != InvalidOid &&
		agg_cron_function_exists("cron.unschedule(bigint)"))
	{
		argtypes[0] = INT8OID;
		values[0] = Int64GetDatum(def->cron_jobid);
		if (agg_exec("SELECT 1 FROM cron.job WHERE jobid = $1",
					 1, argtypes, values, NULL) == 1)
			agg_exec("SELECT cron.unschedule($1)", 1, argtypes, values, NULL);
	}

	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(def->id);
	agg_exec("DELETE FROM pulse.aggregate_defs WHERE id = $1",
			 1, argtypes, values, NULL);
}

/*
 * Bumps the cache tag of the aggregate (its schema-qualified name) through
 * pulse.bump_tag, which NOTIFYs the proxies at commit.
 */
void
agg_bump_tag(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	agg_exec("SELECT pulse.bump_tag($1)", 1, argtypes, values, NULL);
}

/*
 * Records a run in pulse.aggregate_runs and in the aggregate's definition:
 * a success (error == NULL) or a failure.  Caller is connected to SPI.
 */
void
agg_record_run(AggRun *run, const char *error)
{
	Oid			argtypes[6] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, INT8OID, TEXTOID};
	Datum		values[6];
	char		nulls[7] = "      ";

	values[0] = Int32GetDatum(run->id);
	values[1] = TimestampTzGetDatum(run->started);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[3] = CStringGetTextDatum(run->full ? "full" : "incremental");
	values[4] = Int64GetDatum(run->rows);
	if (error != NULL)
	{
		nulls[4] = 'n';
		values[5] = CStringGetTextDatum(error);
	}
	else
		nulls[5] = 'n';

	agg_exec("INSERT INTO pulse.aggregate_runs "
			 "(aggregate_id, aggregate, started, duration, mode, rows_changed, error) "
			 "SELECT d.id, d.relid::regclass::text, $2, $3 - $2, $4, $5, $6 "
			 "FROM pulse.aggregate_defs d WHERE d.id = $1",
			 6, argtypes, values, nulls);
	if (error == NULL)
		agg_exec("UPDATE pulse.aggregate_defs SET last_attempt = $2, "
				 "last_refresh = $2, last_duration = $3 - $2, last_rows = $5, "
				 "last_error = NULL WHERE id = $1",
				 6, argtypes, values, nulls);
	else
		agg_exec("UPDATE pulse.aggregate_defs SET last_attempt = $2, "
				 "last_error = $6 WHERE id = $1",
				 6, argtypes, values, nulls);
	agg_exec("DELETE FROM pulse.aggregate_runs WHERE aggregate_id = $1 AND id <= "
			 "(SELECT r.id FROM pulse.aggregate_runs r WHERE r.aggregate_id = $1 "
			 "ORDER BY r.id DESC OFFSET " CppAsString2(AGG_RUNS_KEPT) " LIMIT 1)",
			 1, argtypes, values, NULL);
}
