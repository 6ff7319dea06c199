/*-------------------------------------------------------------------------
 *
 * jobs_run.c
 *		The worker's side of asynchronous jobs: re-queue the jobs of workers
 *		that died, claim a due job, run it as its submitter, record its
 *		outcome (jobs.c explains the states, the locks and the privileges).
 *
 * pulse_jobs_run_due is called by the per-database worker outside any
 * transaction; every step runs in a transaction of its own
 * (pulse_run_in_xact), acting as the owner of pulse.jobs, except the job's
 * query, which runs as its submitter.  Nothing here throws to the worker: a
 * failure is logged, recorded when it can be, and the next job runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "jobs_int.h"
#include "pulse.h"

/* field4 of the advisory lock tags of running jobs; SQL uses 1 and 2 */
#define JOB_LOCK_KIND		0x5055
/* longest wait before a retry, in seconds */
#define JOB_MAX_BACKOFF		300

#define JOB_ORPHANED_MSG	"the worker running the job exited before it finished"

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

/* A claim's transaction (job_claim_work): what it is given and finds. */
typedef struct JobClaimWork
{
	JobClaim   *job;			/* filled in cxt when a job is claimed */
	MemoryContext cxt;
	bool		locked;			/* took the job's session lock */
	bool		claimed;		/* marked it running */
} JobClaimWork;

/* A failure to record (job_record_failure_work). */
typedef struct JobFailure
{
	JobClaim   *job;
	ErrorData  *edata;
} JobFailure;

static Datum job_execute(JobClaim *job);
static void job_record_failure(JobClaim *job, ErrorData *edata);

/* logs a WARNING "pulse: could not <what>: <message>" for edata and frees it */
static void
job_warn(ErrorData *edata, const char *what)
{
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
 * job_recover_work
 *		Re-queues, as a failed attempt, every running job whose runner is
 *		gone (nobody holds its lock).  In a pulse_run_in_xact transaction.
 */
static void
job_recover_work(void *arg)
{
	Oid			owner = pulse_table_owner("jobs", true);
	PulseAsUser st;
	SPITupleTable *tuptable;
	uint64		n;
	int			rc;

	if (!OidIsValid(owner))
		return;					/* an extension older than the jobs */
	pulse_become_user(&st, owner, true);
	rc = SPI_execute("SELECT id FROM pulse.jobs WHERE state = 'running' "
					 "FOR UPDATE SKIP LOCKED", false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look for orphaned jobs");

	tuptable = SPI_tuptable;
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
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
			continue;			/* its runner is alive */

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
	pulse_restore_user(&st);
}

/*
 * job_claim_work
 *		Locks the next due job, copies it into w->job (in w->cxt), takes its
 *		session lock before marking it running (see jobs.c's header) and
 *		counts the attempt.  In a pulse_run_in_xact transaction.
 */
static void
job_claim_work(void *arg)
{
	JobClaimWork *w = (JobClaimWork *) arg;
	JobClaim   *job = w->job;
	Oid			owner = pulse_table_owner("jobs", true);
	PulseAsUser st;
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	MemoryContext oldcxt;
	bool		isnull;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *elemnulls;
	LOCKTAG		tag;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	int			rc;

	if (!OidIsValid(owner))
		return;
	pulse_become_user(&st, owner, true);
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
	if (SPI_processed != 1)
	{
		pulse_restore_user(&st);
		return;
	}

	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	oldcxt = MemoryContextSwitchTo(w->cxt);
	job->id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
	job->query = SPI_getvalue(tuple, tupdesc, 2);
	arr = DatumGetArrayTypeP(SPI_getbinval(tuple, tupdesc, 3, &isnull));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elemnulls, &job->nargs);
	job->args = (char **) palloc0(sizeof(char *) * Max(job->nargs, 1));
	for (int i = 0; i < job->nargs; i++)
		job->args[i] = elemnulls[i] ? NULL : TextDatumGetCString(elems[i]);
	job->submitted_by = DatumGetObjectId(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	job->tenant = SPI_getvalue(tuple, tupdesc, 5);
	job->timeout_ms = Max(1, DatumGetInt32(SPI_getbinval(tuple, tupdesc, 6, &isnull)));
	job->attempt = DatumGetInt32(SPI_getbinval(tuple, tupdesc, 7, &isnull));
	MemoryContextSwitchTo(oldcxt);

	/* before "running" commits: see jobs.c's header */
	job_lock_tag(&tag, job->id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		pulse_restore_user(&st);
		return;
	}
	w->locked = true;
	values[0] = Int64GetDatum(job->id);
	rc = SPI_execute_with_args("UPDATE pulse.jobs SET "
							   "state = 'running', "
							   "attempts = attempts + 1, "
							   "started_at = clock_timestamp(), "
							   "finished_at = NULL, "
							   "progress = 0, error = NULL, "
							   "sqlstate = NULL "
							   "WHERE id = $1",
							   1, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "could not mark job " INT64_FORMAT " running", job->id);
	w->claimed = true;
	pulse_restore_user(&st);
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
	JobClaimWork w = {job, cxt, false, false};
	ErrorData  *edata = pulse_run_in_xact(job_claim_work, &w);

	if (edata == NULL)
		return w.claimed;
	job_warn(edata, "claim a job");
	if (w.locked)
	{
		LOCKTAG		tag;

		job_lock_tag(&tag, job->id);
		LockRelease(&tag, ExclusiveLock, true);
	}
	return false;
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
 * job_record_failure_work
 *		Records that an attempt failed: failed with a retry after 2^attempts
 *		seconds (at most JOB_MAX_BACKOFF), or dead once out of attempts or
 *		canceled.  In a pulse_run_in_xact transaction.
 */
static void
job_record_failure_work(void *arg)
{
	JobFailure *f = (JobFailure *) arg;
	PulseAsUser st;
	Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, INT4OID};
	Datum		values[4];
	int			rc;

	pulse_become_user(&st, pulse_table_owner("jobs", false), true);
	values[0] = Int64GetDatum(f->job->id);
	values[1] = CStringGetTextDatum(f->edata->message ? f->edata->message : "unknown error");
	values[2] = CStringGetTextDatum(unpack_sql_state(f->edata->sqlerrcode));
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
			 f->job->id);
	pulse_restore_user(&st);
}

/*
 * job_record_failure
 *		Records that an attempt of job failed with edata.  Logs and swallows
 *		its own errors: the job then stays "running" without a lock and is
 *		re-queued as an orphan.
 *
 * Caller is outside any transaction.
 */
static void
job_record_failure(JobClaim *job, ErrorData *edata)
{
	JobFailure	f = {job, edata};
	ErrorData  *edata2;

	ereport(LOG,
			(errmsg("pulse: job " INT64_FORMAT " failed (attempt %d): %s",
					job->id, job->attempt, edata->message)));
	if ((edata2 = pulse_run_in_xact(job_record_failure_work, &f)) != NULL)
	{
		char		what[64];

		snprintf(what, sizeof(what), "record the failure of job " INT64_FORMAT,
				 job->id);
		job_warn(edata2, what);
	}
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

	{
		ErrorData  *edata = pulse_run_in_xact(job_recover_work, NULL);

		if (edata != NULL)
			job_warn(edata, "recover orphaned jobs");
	}

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
