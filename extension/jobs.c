/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		Asynchronous jobs: heavy report queries run by the per-database
 *		background worker, with a timeout, retries and a dead-letter state.
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

#include "pulse.h"

/* field4 of the advisory lock tags of running jobs; SQL uses 1 and 2 */
#define JOB_LOCK_KIND		0x5055
/* longest wait before a retry, in seconds */
#define JOB_MAX_BACKOFF		300

#define JOB_CANCELED_MSG	"canceled by pulse.cancel_job"
#define JOB_ORPHANED_MSG	"the worker running the job exited before it finished"

/* GUC: pulse.job_max_attempts */
static int	job_max_attempts = 3;

/* True when the current transaction submitted a job: wake the worker. */
static bool job_wake_at_commit = false;
static bool job_callback_registered = false;

/* What the worker needs of a claimed job, copied out of the claim. */
typedef struct JobClaim
{
	int64		id;
	char	   *query;
	int			nargs;
	char	  **args;			/* text of each argument, NULL for JSON null */
	Oid			submitted_by;
	char	   *tenant;
	int			timeout_ms;
	int			attempt;		/* attempts, this one included */
} JobClaim;


static void job_xact_callback(XactEvent event, void *arg);
static void job_parse_error_callback(void *arg);
static char *job_check_query(const char *query);
static int	job_timeout_ms(Interval *timeout);
static bool job_visible(Oid submitted_by, const char *tenant);
static void job_lock_tag(LOCKTAG *tag, int64 id);
static void job_recover_orphans(MemoryContext cxt);
static bool job_claim(JobClaim *job, MemoryContext cxt);
static void job_run(JobClaim *job, MemoryContext cxt);
static Datum job_execute(JobClaim *job);
static void job_record_failure(JobClaim *job, ErrorData *edata);
static void job_owner_begin(PulseAsUser *st, Oid owner);
static void job_owner_end(PulseAsUser *st);
static bool job_xact_begin(PulseAsUser *st);
static void job_xact_commit(PulseAsUser *st, bool as_owner);
static void job_xact_abort_warning(MemoryContext cxt, const char *what);

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
static void
job_owner_begin(PulseAsUser *st, Oid owner)
{
	pulse_become_user(st, owner, true);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
job_owner_end(PulseAsUser *st)
{
	SPI_finish();
	pulse_restore_user(st);
}

/*
 * job_xact_begin / job_xact_commit
 *		A transaction of the worker's own with an active snapshot, acting as
 *		the owner of pulse.jobs (job_owner_begin) when the table exists:
 *		job_xact_begin returns whether it does (an extension older than the
 *		jobs leaves it out); job_xact_commit takes that answer.  Caller is
 *		outside any transaction, in a PG_TRY whose PG_CATCH calls
 *		job_xact_abort_warning or pulse_catch_and_abort.
 */
static bool
job_xact_begin(PulseAsUser *st)
{
	Oid			owner;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	owner = pulse_table_owner("jobs", true);
	if (!OidIsValid(owner))
		return false;
	job_owner_begin(st, owner);
	return true;
}

static void
job_xact_commit(PulseAsUser *st, bool as_owner)
{
	if (as_owner)
		job_owner_end(st);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * job_xact_abort_warning
 *		In the PG_CATCH of a job_xact_begin transaction: aborts it and logs a
 *		WARNING "pulse: could not <what>: <message>".  Leaves cxt current.
 */
static void
job_xact_abort_warning(MemoryContext cxt, const char *what)
{
	ErrorData  *edata = pulse_catch_and_abort(cxt);

	ereport(WARNING,
			(errmsg("pulse: could not %s: %s", what, edata->message)));
	FreeErrorData(edata);
}

/*
 * job_lock_tag
 *		The advisory lock tag of job id in this database.
 */
static void
job_lock_tag(LOCKTAG *tag, int64 id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId,
						 (uint32) ((uint64) id >> 32),
						 (uint32) id,
						 JOB_LOCK_KIND);
}

/*
 * job_recover_orphans
 *		Re-queues, as a failed attempt, every running job whose runner is
 *		gone (nobody holds its lock).  Logs and swallows errors.
 *
 * Caller is outside any transaction.
 */
static void
job_recover_orphans(MemoryContext cxt)
{
	PG_TRY();
	{
		PulseAsUser	st;
		bool		as_owner;
		SPITupleTable *tuptable;
		uint64		n;
		uint64		i;
		int			rc;

		as_owner = job_xact_begin(&st);
		if (as_owner)
		{

			rc = SPI_execute("SELECT id FROM pulse.jobs WHERE state = 'running' "
							 "FOR UPDATE SKIP LOCKED", false, 0);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "could not look for orphaned jobs");

			tuptable = SPI_tuptable;
			n = SPI_processed;
			for (i = 0; i < n; i++)
			{
				bool		isnull;
				int64		id;
				LOCKTAG		tag;
				Oid			argtypes[1] = {INT8OID};
				Datum		values[1];

				id = DatumGetInt64(SPI_getbinval(tuptable->vals[i],
												 tuptable->tupdesc, 1, &isnull));
				job_lock_tag(&tag, id);
				/* transaction-level: released when this transaction ends */
				if (LockAcquire(&tag, ExclusiveLock, false, true) ==
					LOCKACQUIRE_NOT_AVAIL)
					continue;	/* its runner is alive */

				values[0] = Int64GetDatum(id);
				rc = SPI_execute_with_args("UPDATE pulse.jobs SET "
										   "state = CASE WHEN cancel_requested "
										   "OR attempts >= max_attempts "
										   "THEN 'dead' ELSE 'failed' END, "
										   "error = CASE WHEN cancel_requested "
										   "THEN '" JOB_CANCELED_MSG "' "
										   "ELSE '" JOB_ORPHANED_MSG "' END, "
										   "sqlstate = NULL, "
										   "finished_at = clock_timestamp(), "
										   "run_after = clock_timestamp() "
										   "WHERE id = $1",
										   1, argtypes, values, NULL, false, 0);
				if (rc != SPI_OK_UPDATE)
					elog(ERROR, "could not re-queue job " INT64_FORMAT, id);
				ereport(LOG,
						(errmsg("pulse: job " INT64_FORMAT " was left running by a worker that exited; re-queued",
								id)));
			}

		}
		job_xact_commit(&st, as_owner);
	}
	PG_CATCH();
	{
		job_xact_abort_warning(cxt, "recover orphaned jobs");
	}
	PG_END_TRY();
}

/*
 * job_claim
 *		Claims the next due job into *job (allocated in cxt): locks it, marks
 *		it running, counts the attempt and commits.  Returns false when no job
 *		is due (or on error, which is logged).  On success the caller holds
 *		the job's session lock and must release it.
 *
 * Caller is outside any transaction.
 */
static bool
job_claim(JobClaim *job, MemoryContext cxt)
{
	volatile bool claimed = false;
	volatile bool locked = false;
	LOCKTAG		tag;

	PG_TRY();
	{
		PulseAsUser	st;
		bool		as_owner;
		int			rc;

		as_owner = job_xact_begin(&st);
		if (as_owner)
		{

			rc = SPI_execute("SELECT j.id, j.query, "
							 "ARRAY(SELECT a.e #>> '{}' "
							 "FROM jsonb_array_elements(j.args) "
							 "WITH ORDINALITY AS a(e, n) ORDER BY a.n), "
							 "j.submitted_by, j.tenant, "
							 "least(extract(epoch FROM j.timeout) * 1000, "
							 "2147483647)::integer, "
							 "j.attempts + 1 "
							 "FROM pulse.jobs j "
							 "WHERE j.state IN ('queued', 'failed') "
							 "AND j.run_after <= now() "
							 "ORDER BY j.run_after, j.id "
							 "LIMIT 1 FOR UPDATE SKIP LOCKED", false, 1);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "could not look for due jobs");

			if (SPI_processed == 1)
			{
				HeapTuple	tuple = SPI_tuptable->vals[0];
				TupleDesc	tupdesc = SPI_tuptable->tupdesc;
				MemoryContext oldcxt;
				bool		isnull;
				ArrayType  *arr;
				Datum	   *elems;
				bool	   *elemnulls;
				int			i;

				oldcxt = MemoryContextSwitchTo(cxt);
				job->id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
				job->query = SPI_getvalue(tuple, tupdesc, 2);
				arr = DatumGetArrayTypeP(SPI_getbinval(tuple, tupdesc, 3, &isnull));
				deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
								  &elems, &elemnulls, &job->nargs);
				job->args = (char **) palloc0(sizeof(char *) * Max(job->nargs, 1));
				for (i = 0; i < job->nargs; i++)
					job->args[i] = elemnulls[i] ? NULL
						: TextDatumGetCString(elems[i]);
				job->submitted_by = DatumGetObjectId(SPI_getbinval(tuple, tupdesc, 4, &isnull));
				job->tenant = SPI_getvalue(tuple, tupdesc, 5);
				job->timeout_ms = Max(1, DatumGetInt32(SPI_getbinval(tuple, tupdesc, 6, &isnull)));
				job->attempt = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 7, &isnull));
				MemoryContextSwitchTo(oldcxt);

				/* before "running" commits: see the file header */
				job_lock_tag(&tag, job->id);
				if (LockAcquire(&tag, ExclusiveLock, true, true) !=
					LOCKACQUIRE_NOT_AVAIL)
				{
					Oid			argtypes[1] = {INT8OID};
					Datum		values[1] = {Int64GetDatum(job->id)};

					locked = true;
					rc = SPI_execute_with_args("UPDATE pulse.jobs SET "
											   "state = 'running', "
											   "attempts = attempts + 1, "
											   "started_at = clock_timestamp(), "
											   "finished_at = NULL, "
											   "progress = 0, error = NULL, "
											   "sqlstate = NULL "
											   "WHERE id = $1",
											   1, argtypes, values, NULL,
											   false, 0);
					if (rc != SPI_OK_UPDATE || SPI_processed != 1)
						elog(ERROR, "could not mark job " INT64_FORMAT " running",
							 job->id);
					claimed = true;
				}
			}

		}
		job_xact_commit(&st, as_owner);
	}
	PG_CATCH();
	{
		job_xact_abort_warning(cxt, "claim a job");
		if (locked)
		{
			job_lock_tag(&tag, job->id);
			LockRelease(&tag, ExclusiveLock, true);
		}
		claimed = false;
	}
	PG_END_TRY();

	return claimed;
}

/*
 * job_execute
 *		Runs the job's query as its submitter and returns the rows as a jsonb
 *		array, allocated in the SPI procedure context.
 *
 * Caller is connected to SPI, has an active snapshot, and acts as the
 * worker's own role; the role switch and settings last until the end of the
 * transaction or the return.
 */
static Datum
job_execute(JobClaim *job)
{
	Oid			save_userid;
	int			save_sec_context;
	char		timeout_text[32];
	char	   *sql;
	List	   *raw;
	Oid		   *types;
	int			ntypes;
	SPIExecuteOptions eopts;
	SPIPlanPtr	plan;
	ParamListInfo paramli;
	Datum		result;
	bool		isnull;
	int			i;
	int			rc;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(job->submitted_by)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u that submitted the job does not exist",
						job->submitted_by)));

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(job->submitted_by,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);

	/* SET LOCAL pulse.tenant, statement_timeout */
	(void) set_config_option("pulse.tenant", job->tenant,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	snprintf(timeout_text, sizeof(timeout_text), "%d", job->timeout_ms);
	(void) set_config_option("statement_timeout", timeout_text,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);

	sql = psprintf("SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)), "
				   "'[]'::pg_catalog.jsonb) FROM (\n%s\n) r", job->query);

	/*
	 * Infer the parameter types as an extended-protocol Parse without types
	 * does (parse_analyze_varparams also checks that every use of a
	 * parameter agrees on its type), then plan with those types fixed.  A
	 * parameter whose type nothing implies is text, like a JSON string.
	 */
	ntypes = job->nargs;
	types = (Oid *) palloc0(sizeof(Oid) * Max(job->nargs, 1));
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	(void) parse_analyze_varparams(linitial_node(RawStmt, raw), sql,
								   &types, &ntypes, NULL);
	if (ntypes > job->nargs)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("there is no parameter $%d", ntypes),
				 errdetail("The job has %d arguments.", job->nargs)));
	for (i = 0; i < job->nargs; i++)
	{
		if (!OidIsValid(types[i]) || types[i] == UNKNOWNOID)
			types[i] = TEXTOID;
	}
	plan = SPI_prepare(sql, job->nargs, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the job query: %s",
			 SPI_result_code_string(SPI_result));

	paramli = makeParamList(job->nargs);
	for (i = 0; i < job->nargs; i++)
	{
		ParamExternData *prm = &paramli->params[i];

		prm->ptype = types[i];
		prm->pflags = PARAM_FLAG_CONST;
		prm->isnull = (job->args[i] == NULL);
		prm->value = (Datum) 0;
		if (!prm->isnull)
		{
			Oid			typinput;
			Oid			typioparam;

			getTypeInputInfo(prm->ptype, &typinput, &typioparam);
			prm->value = OidInputFunctionCall(typinput, job->args[i],
											  typioparam, -1);
		}
	}

	memset(&eopts, 0, sizeof(eopts));
	eopts.params = paramli;
	eopts.read_only = false;
	eopts.tcount = 0;

	/* the worker has no client loop to arm statement_timeout: do it here */
	enable_timeout_after(STATEMENT_TIMEOUT, job->timeout_ms);
	rc = SPI_execute_plan_extended(plan, &eopts);
	disable_timeout(STATEMENT_TIMEOUT, false);

	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "job query returned %s", SPI_result_code_string(rc));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						   &isnull);
	result = PointerGetDatum(PG_DETOAST_DATUM_COPY(result));

	SetUserIdAndSecContext(save_userid, save_sec_context);
	return result;
}

/*
 * job_run
 *		Runs a claimed job in one transaction and records its outcome; a
 *		failure is recorded in another (job_record_failure).  Never throws.
 *
 * Caller is outside any transaction and holds the job's session lock.
 */
static void
job_run(JobClaim *job, MemoryContext cxt)
{
	char		activity[64];

	snprintf(activity, sizeof(activity), "pulse job " INT64_FORMAT, job->id);
	pgstat_report_activity(STATE_RUNNING, activity);

	PG_TRY();
	{
		PulseAsUser	st;
		Oid			owner;
		Oid			argtypes[2] = {INT8OID, JSONBOID};
		Datum		values[2];
		char		nulls[2] = {' ', 'n'};
		bool		canceled;
		bool		isnull;
		int			rc;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		values[0] = Int64GetDatum(job->id);
		values[1] = (Datum) 0;

		owner = pulse_table_owner("jobs", false);
		pulse_become_user(&st, owner, true);
		rc = SPI_execute_with_args("SELECT cancel_requested FROM pulse.jobs "
								   "WHERE id = $1", 1, argtypes, values, NULL,
								   true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "job " INT64_FORMAT " disappeared", job->id);
		canceled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1,
											  &isnull));
		pulse_restore_user(&st);

		if (!canceled)
		{
			values[1] = job_execute(job);
			nulls[1] = ' ';
		}

		/* a cancel that came while the query ran wins over its result */
		pulse_become_user(&st, owner, true);
		rc = SPI_execute_with_args("UPDATE pulse.jobs SET "
								   "state = CASE WHEN cancel_requested "
								   "THEN 'dead' ELSE 'done' END, "
								   "result = CASE WHEN cancel_requested "
								   "THEN NULL ELSE $2 END, "
								   "error = CASE WHEN cancel_requested "
								   "THEN '" JOB_CANCELED_MSG "' END, "
								   "sqlstate = CASE WHEN cancel_requested "
								   "THEN '57014' END, "
								   "progress = CASE WHEN cancel_requested "
								   "THEN progress ELSE 1 END, "
								   "finished_at = clock_timestamp() "
								   "WHERE id = $1 AND state = 'running'",
								   2, argtypes, values, nulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "could not record the result of job " INT64_FORMAT,
				 job->id);
		pulse_restore_user(&st);

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		edata = pulse_catch_and_abort(cxt);
		job_record_failure(job, edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * job_record_failure
 *		Records that an attempt of job failed with edata: failed with a retry
 *		after 2^attempts seconds (at most JOB_MAX_BACKOFF), or dead once out
 *		of attempts or canceled.  Logs and swallows its own errors: the job
 *		then stays "running" without a lock and is re-queued as an orphan.
 *
 * Caller is outside any transaction.
 */
static void
job_record_failure(JobClaim *job, ErrorData *edata)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	ereport(LOG,
			(errmsg("pulse: job " INT64_FORMAT " failed (attempt %d): %s",
					job->id, job->attempt, edata->message)));

	PG_TRY();
	{
		PulseAsUser	st;
		Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, INT4OID};
		Datum		values[4];
		int			rc;

		if (!job_xact_begin(&st))
			(void) pulse_table_owner("jobs", false);	/* raises the error */

		values[0] = Int64GetDatum(job->id);
		values[1] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
		values[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		values[3] = Int32GetDatum(JOB_MAX_BACKOFF);
		rc = SPI_execute_with_args("UPDATE pulse.jobs SET "
								   "state = CASE WHEN cancel_requested "
								   "OR attempts >= max_attempts "
								   "THEN 'dead' ELSE 'failed' END, "
								   "error = CASE WHEN cancel_requested "
								   "THEN '" JOB_CANCELED_MSG "' ELSE $2 END, "
								   "sqlstate = CASE WHEN cancel_requested "
								   "THEN '57014' ELSE $3 END, "
								   "finished_at = clock_timestamp(), "
								   "run_after = CASE WHEN cancel_requested "
								   "OR attempts >= max_attempts THEN run_after "
								   "ELSE clock_timestamp() + "
								   "make_interval(secs => least(power(2, attempts), $4)) END "
								   "WHERE id = $1 AND state = 'running'",
								   4, argtypes, values, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "could not record the failure of job " INT64_FORMAT,
				 job->id);

		job_xact_commit(&st, true);
	}
	PG_CATCH();
	{
		char		what[64];

		snprintf(what, sizeof(what), "record the failure of job " INT64_FORMAT,
				 job->id);
		job_xact_abort_warning(oldcxt, what);
	}
	PG_END_TRY();

	MemoryContextSwitchTo(oldcxt);
}

/*
 * pulse_jobs_run_due
 *		See pulse.h.  Re-queues orphaned jobs, then claims and runs due jobs
 *		one at a time, at most max_jobs of them.
 */
int
pulse_jobs_run_due(int max_jobs)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext cxt;
	int			ran = 0;

	if (max_jobs <= 0 || RecoveryInProgress())
		return 0;

	/* per-call memory: job copies and error data, gone when we return */
	cxt = AllocSetContextCreate(callercxt, "pulse jobs",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	job_recover_orphans(cxt);

	while (ran < max_jobs)
	{
		JobClaim	job;
		LOCKTAG		tag;

		MemoryContextSwitchTo(cxt);
		memset(&job, 0, sizeof(job));
		if (!job_claim(&job, cxt))
			break;

		job_run(&job, cxt);

		/* the outcome is committed (or the job is an orphan): let it go */
		job_lock_tag(&tag, job.id);
		LockRelease(&tag, ExclusiveLock, true);
		ran++;
		MemoryContextReset(cxt);
	}

	MemoryContextSwitchTo(callercxt);
	MemoryContextDelete(cxt);
	return ran;
}
