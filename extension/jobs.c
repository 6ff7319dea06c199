/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		Asynchronous jobs: heavy report queries run by the per-database
 *		background worker, with a timeout, retries and a dead-letter state.
 *
 * This file holds the SQL functions (submit, status, cancel); jobs_run.c the
 * worker's side (claim, run, record, recover).
 *
 * pulse.submit_job(query, args, idempotency_key, timeout) checks that query
 * is one SELECT, stores it in pulse.jobs and wakes the database's worker when
 * the submitting transaction commits.  The worker calls pulse_jobs_run_due(),
 * which claims due jobs one at a time and runs each in its own transaction as
 * the role that submitted it, with pulse.tenant set to the submitter's tenant
 * and the job's timeout as statement timeout.  The rows the query returns are
 * stored as a JSON array in pulse.jobs.result.  A failing job is retried after
 * 2^attempts seconds (at most 5 minutes) until it has been tried
 * pulse.job_max_attempts times (read at submit); then it is dead.
 *
 * States: queued -> running -> done; running -> failed (waiting for its
 * retry: due again at run_after) -> running ...; running/failed -> dead once
 * out of attempts; queued/failed -> dead when canceled.  A running job cannot
 * be interrupted from another session: pulse.cancel_job marks it, and the
 * worker checks the mark before it starts the query and when it returns (the
 * result is then dropped and the job is dead).  The job's timeout bounds how
 * long a canceled job still runs.
 *
 * Locking and crash safety.  A runner holds a session-level advisory lock on
 * the job (LOCKTAG_ADVISORY with field4 JOB_LOCK_KIND, so that no SQL-level
 * advisory lock call can name it) from before the transaction that marks the
 * job running commits until after the transaction that records its outcome
 * commits.  Session advisory locks survive transaction aborts and vanish with
 * the backend, so a job that is "running" while nobody holds its lock was
 * left behind by a worker that died (crash, kill, shutdown).  At every call,
 * before claiming, pulse_jobs_run_due locks such rows (FOR UPDATE SKIP
 * LOCKED), tries their advisory lock, and re-queues those whose lock it gets
 * as a failed attempt: nothing is lost, and a job never runs in two workers at
 * once.  (A job query that calls pg_advisory_unlock_all() drops the lock of
 * its own job and may be run a second time; it only hurts itself.)
 *
 * The query runs with the settings of the worker's session (search_path
 * "$user", public unless the database sets another), not with the
 * submitter's ALTER ROLE ... SET settings: qualify names in job queries.
 *
 * Privileges.  pulse.jobs is not accessible to PUBLIC.  The SQL functions
 * are C functions that act on it as its owner (the extension owner, with
 * search_path pinned to pg_catalog), after checking the caller: a job is
 * visible only to its submitting role (and roles having its privileges) in
 * the same pulse.tenant, and to superusers.  pulse.job and pulse.cancel_job
 * answer NULL for a job that does not exist or is not visible, so ids cannot
 * be probed.  The query runs with SECURITY_LOCAL_USERID_CHANGE, so it cannot
 * SET ROLE back to the worker's role.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "jobs_int.h"
#include "pulse.h"

/* GUC: pulse.job_max_attempts */
static int	job_max_attempts = 3;

/* True when the current transaction submitted a job: wake the worker. */
static bool job_wake_at_commit = false;
static bool job_callback_registered = false;



static void job_xact_callback(XactEvent event, void *arg);
static void job_parse_error_callback(void *arg);
static char *job_check_query(const char *query);
static int	job_timeout_ms(Interval *timeout);
static bool job_visible(Oid submitted_by, const char *tenant);

/*
 * pulse_jobs_init
 *		Defines the job GUCs.  Called from _PG_init.
 */
void
pulse_jobs_init(void)
{
	DefineCustomIntVariable("pulse.job_max_attempts",
							"How many times a job is tried before it is dead.",
							"Read when the job is submitted.  A failed attempt "
							"is retried after 2^attempts seconds (at most 5 "
							"minutes).",
							&job_max_attempts,
							3, 1, 100,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
}

/*
 * job_xact_callback
 *		Wakes the worker when a transaction that submitted jobs commits.
 */
static void
job_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (job_wake_at_commit)
			{
				job_wake_at_commit = false;
				pulse_worker_wake(MyDatabaseId);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			job_wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * job_parse_error_callback
 *		Reports a syntax error position inside the job query rather than
 *		inside the statement that called pulse.submit_job.
 */
static void
job_parse_error_callback(void *arg)
{
	const char *query = (const char *) arg;
	int			syntaxerrposition = geterrposition();

	if (syntaxerrposition > 0)
	{
		errposition(0);
		internalerrposition(syntaxerrposition);
		internalerrquery(query);
	}
	errcontext("job query");
}

/*
 * job_check_query
 *		Returns the text of query's only statement; raises 42601 when query
 *		does not parse and 22023 unless it is one SELECT that neither writes
 *		(data-modifying WITH, SELECT INTO) nor locks rows.
 */
static char *
job_check_query(const char *query)
{
	ErrorContextCallback errcb;
	List	   *raw;
	RawStmt    *rawstmt;
	SelectStmt *select;
	SelectStmt *leaf;
	ListCell   *lc;
	int			len;

	errcb.callback = job_parse_error_callback;
	errcb.arg = (void *) query;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	raw = raw_parser(query, RAW_PARSE_DEFAULT);
	error_context_stack = errcb.previous;

	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job query must be a single SELECT statement"),
				 errdetail("The query has %d statements.", list_length(raw))));

	rawstmt = linitial_node(RawStmt, raw);
	if (!IsA(rawstmt->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job query must be a SELECT statement"),
				 errdetail("The statement is %s.",
						   CreateCommandName(rawstmt->stmt))));

	select = (SelectStmt *) rawstmt->stmt;
	for (leaf = select; leaf->op != SETOP_NONE; leaf = leaf->larg)
		;
	if (leaf->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job query must not be SELECT INTO")));
	if (select->lockingClause != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job query must not lock rows"),
				 errdetail("FOR UPDATE and FOR SHARE are not allowed in a job.")));
	if (select->withClause != NULL)
	{
		foreach(lc, select->withClause->ctes)
		{
			CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

			if (!IsA(cte->ctequery, SelectStmt))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job query must not modify data"),
						 errdetail("WITH query \"%s\" is %s.",
								   cte->ctename,
								   CreateCommandName(cte->ctequery))));
		}
	}

	/* the statement alone, without a trailing semicolon */
	len = rawstmt->stmt_len > 0 ? rawstmt->stmt_len
		: (int) strlen(query + rawstmt->stmt_location);
	return pnstrdup(query + rawstmt->stmt_location, len);
}

/*
 * job_timeout_ms
 *		timeout in milliseconds; 22023 unless it is positive and fits a
 *		statement timeout.  Months count as 30 days.
 */
static int
job_timeout_ms(Interval *timeout)
{
	double		ms;

	ms = ((double) timeout->time +
		  (double) timeout->day * USECS_PER_DAY +
		  (double) timeout->month * DAYS_PER_MONTH * USECS_PER_DAY) / 1000.0;
	if (ms < 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job timeout must be positive")));
	if (ms > (double) INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job timeout must be less than %d milliseconds",
						INT_MAX)));
	return (int) ms;
}

/*
 * job_visible
 *		Whether the current user may see a job of submitted_by in tenant.
 */
static bool
job_visible(Oid submitted_by, const char *tenant)
{
	Oid			userid = GetUserId();
	const char *current = pulse_tenant ? pulse_tenant : "";

	if (superuser_arg(userid))
		return true;
	return has_privs_of_role(userid, submitted_by) &&
		strcmp(current, tenant) == 0;
}

/*
 * pulse.submit_job(query text, args jsonb DEFAULT '[]',
 *					idempotency_key text DEFAULT NULL,
 *					timeout interval DEFAULT '5 minutes') RETURNS bigint
 *
 * Queues query with args bound to $1..$n and returns the job id.  The same
 * idempotency key, for the same role and tenant, returns the same id.
 */
PG_FUNCTION_INFO_V1(pulse_submit_job);
Datum
pulse_submit_job(PG_FUNCTION_ARGS)
{
	char	   *query;
	Jsonb	   *args;
	char	   *key = NULL;
	Interval   *timeout;
	const char *tenant = pulse_tenant ? pulse_tenant : "";
	Oid			userid = GetUserId();
	PulseAsUser	st;
	Oid			argtypes[7] = {TEXTOID, JSONBOID, TEXTOID, INT4OID,
	INTERVALOID, OIDOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	bool		inserted;
	int64		id;
	int			rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job query must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job arguments must not be null"),
				 errhint("Pass '[]' for a query without parameters.")));
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job timeout must not be null")));

	query = job_check_query(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	args = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(args) || JB_ROOT_IS_SCALAR(args))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job arguments must be a JSON array"),
				 errhint("Element n is bound to $n.")));

	if (!PG_ARGISNULL(2))
	{
		key = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key must not be empty")));
	}

	timeout = PG_GETARG_INTERVAL_P(3);
	(void) job_timeout_ms(timeout);

	values[0] = CStringGetTextDatum(query);
	values[1] = JsonbPGetDatum(args);
	if (key != NULL)
		values[2] = CStringGetTextDatum(key);
	else
	{
		values[2] = (Datum) 0;
		nulls[2] = 'n';
	}
	values[3] = Int32GetDatum(job_max_attempts);
	values[4] = IntervalPGetDatum(timeout);
	values[5] = ObjectIdGetDatum(userid);
	values[6] = CStringGetTextDatum(tenant);

	job_owner_begin(&st, pulse_table_owner("jobs", false));

	rc = SPI_execute_with_args("INSERT INTO pulse.jobs "
							   "(query, args, idempotency_key, max_attempts, "
							   "timeout, submitted_by, tenant) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7) "
							   "ON CONFLICT (submitted_by, tenant, idempotency_key) "
							   "WHERE idempotency_key IS NOT NULL DO NOTHING "
							   "RETURNING id",
							   7, argtypes, values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not queue job: %s", SPI_result_code_string(rc));
	inserted = (SPI_processed == 1);
	if (!inserted)
	{
		/* an earlier submission with this key: its id */
		rc = SPI_execute_with_args("SELECT id FROM pulse.jobs "
								   "WHERE submitted_by = $6 AND tenant = $7 "
								   "AND idempotency_key = $3",
								   7, argtypes, values, nulls, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not find the job with idempotency key \"%s\"",
							key),
					 errhint("Retry the transaction.")));
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));

	job_owner_end(&st);

	if (inserted)
	{
		if (!job_callback_registered)
		{
			RegisterXactCallback(job_xact_callback, NULL);
			job_callback_registered = true;
		}
		job_wake_at_commit = true;
	}

	PG_RETURN_INT64(id);
}

/*
 * pulse.job(id bigint) RETURNS jsonb
 *
 * Status of a job: {id, state, attempts, max_attempts, created_at,
 * started_at, finished_at, run_after, timeout, progress, cancel_requested,
 * error, sqlstate, submitted_by, tenant, idempotency_key, query, args} plus
 * result when done.  NULL when the job does not exist or is not visible.
 */
PG_FUNCTION_INFO_V1(pulse_job);
Datum
pulse_job(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	PulseAsUser	st;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	Oid			submitted_by = InvalidOid;
	char	   *tenant = NULL;
	Datum		status = (Datum) 0;
	bool		isnull;
	int			rc;

	job_owner_begin(&st, pulse_table_owner("jobs", false));

	rc = SPI_execute_with_args("SELECT submitted_by, tenant, "
							   "jsonb_build_object("
							   "'id', id, 'state', state, "
							   "'attempts', attempts, 'max_attempts', max_attempts, "
							   "'created_at', created_at, 'started_at', started_at, "
							   "'finished_at', finished_at, 'run_after', run_after, "
							   "'timeout', timeout, 'progress', progress, "
							   "'cancel_requested', cancel_requested, "
							   "'error', error, 'sqlstate', sqlstate, "
							   "'submitted_by', pg_get_userbyid(submitted_by), "
							   "'tenant', tenant, 'idempotency_key', idempotency_key, "
							   "'query', query, 'args', args) || "
							   "CASE WHEN state = 'done' "
							   "THEN jsonb_build_object('result', result) "
							   "ELSE '{}'::jsonb END "
							   "FROM pulse.jobs WHERE id = $1",
							   1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read job " INT64_FORMAT, id);
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	tupdesc = SPI_tuptable->tupdesc;

		submitted_by = DatumGetObjectId(SPI_getbinval(tuple, tupdesc, 1, &isnull));
		tenant = SPI_getvalue(tuple, tupdesc, 2);
		status = SPI_datumTransfer(SPI_getbinval(tuple, tupdesc, 3, &isnull),
								   false, -1);
	}

	job_owner_end(&st);

	if (tenant == NULL || !job_visible(submitted_by, tenant))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(status);
}

/*
 * pulse.cancel_job(id bigint) RETURNS boolean
 *
 * A queued job, or a failed one waiting for its retry, is dead at once; a
 * running one is marked and dies when the worker sees the mark (before or
 * after its query, see the file header).  True when the job was canceled or
 * marked, false when it had already finished (done or dead), NULL when it
 * does not exist or is not visible.
 */
PG_FUNCTION_INFO_V1(pulse_cancel_job);
Datum
pulse_cancel_job(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	PulseAsUser	st;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	Oid			submitted_by = InvalidOid;
	char	   *tenant = NULL;
	bool		isnull;
	bool		visible;
	bool		canceled = false;
	int			rc;

	job_owner_begin(&st, pulse_table_owner("jobs", false));

	rc = SPI_execute_with_args("SELECT submitted_by, tenant FROM pulse.jobs "
							   "WHERE id = $1",
							   1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read job " INT64_FORMAT, id);
	if (SPI_processed == 1)
	{
		submitted_by = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc,
													  1, &isnull));
		tenant = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}

	/* the visibility check is about the caller, not the owner */
	SetUserIdAndSecContext(st.save_userid, st.save_sec_context);
	visible = (tenant != NULL && job_visible(submitted_by, tenant));
	SetUserIdAndSecContext(pulse_table_owner("jobs", false), st.save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	if (visible)
	{
		rc = SPI_execute_with_args("UPDATE pulse.jobs SET "
								   "cancel_requested = true, "
								   "state = CASE WHEN state IN ('queued', 'failed') "
								   "THEN 'dead' ELSE state END, "
								   "error = CASE WHEN state IN ('queued', 'failed') "
								   "THEN '" JOB_CANCELED_MSG "' ELSE error END, "
								   "sqlstate = CASE WHEN state IN ('queued', 'failed') "
								   "THEN '57014' ELSE sqlstate END, "
								   "finished_at = CASE WHEN state IN ('queued', 'failed') "
								   "THEN clock_timestamp() ELSE finished_at END "
								   "WHERE id = $1 "
								   "AND state IN ('queued', 'failed', 'running')",
								   1, argtypes, values, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "could not cancel job " INT64_FORMAT, id);
		canceled = (SPI_processed == 1);
	}

	job_owner_end(&st);

	if (!visible)
		PG_RETURN_NULL();
	PG_RETURN_BOOL(canceled);
}

/*
 * job_owner_begin / job_owner_end
 *		Act as owner, the owner of pulse.jobs (see the file header), connected
 *		to SPI, until job_owner_end.  Caller is in a transaction.
 */
void
job_owner_begin(PulseAsUser *st, Oid owner)
{
	pulse_become_user(st, owner, true);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
job_owner_end(PulseAsUser *st)
{
	SPI_finish();
	pulse_restore_user(st);
}

