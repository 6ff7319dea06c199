/*-------------------------------------------------------------------------
 *
 * pulse.c
 *		Entry point of the pulse extension: module magic, _PG_init and the
 *		GUCs shared by the other files.
 *
 * Everything here runs once per backend, when the library is loaded (at
 * postmaster start when it is in shared_preload_libraries, otherwise on
 * first use).  The GUC variables are plain backend-local globals.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pulse.h"

PG_MODULE_MAGIC;

bool		pulse_require_index_for_page = false;
char	   *pulse_tenant = NULL;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomBoolVariable("pulse.require_index_for_page",
							 "Makes pulse.page refuse an order that no index serves.",
							 "When on, a page whose plan needs a sort over a scan "
							 "fails with SQLSTATE 55000 and a hint naming the index "
							 "to create.",
							 &pulse_require_index_for_page,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("pulse.tenant",
							   "Tenant whose rows this transaction may see.",
							   "Set with SET LOCAL by pulse-proxy from a verified "
							   "token; row-level security policies read it with "
							   "current_setting('pulse.tenant', true).  Cursors "
							   "are bound to it.",
							   &pulse_tenant,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	pulse_jobs_init();
	pulse_worker_init();

	MarkGUCPrefixReserved("pulse");
}

/*
 * pulse._random_bytes(n int) RETURNS bytea
 *
 * n bytes from the server's strong random source; used once by the install
 * script to generate the per-database cursor secret.
 */
PG_FUNCTION_INFO_V1(pulse_random_bytes);
Datum
pulse_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	bytea	   *result;

	if (n < 1 || n > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of random bytes must be between 1 and 1024")));

	result = (bytea *) palloc(VARHDRSZ + n);
	SET_VARSIZE(result, VARHDRSZ + n);
	if (!pg_strong_random(VARDATA(result), n))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	PG_RETURN_BYTEA_P(result);
}

/*
 * pulse_table_owner
 *		Owner of table pulse.<relname>; InvalidOid when missing_ok and the
 *		table does not exist (the extension is older than the table).
 */
Oid
pulse_table_owner(const char *relname, bool missing_ok)
{
	Oid			nspid = get_namespace_oid("pulse", true);
	Oid			relid = InvalidOid;
	HeapTuple	tuple;
	Oid			owner;

	if (OidIsValid(nspid))
		relid = get_relname_relid(relname, nspid);
	if (!OidIsValid(relid))
	{
		if (missing_ok)
			return InvalidOid;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table pulse.%s does not exist", relname),
				 errhint("Run ALTER EXTENSION pulse UPDATE.")));
	}

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * pulse_become_user / pulse_restore_user
 *		Act as userid, with search_path pinned to pg_catalog (and, when
 *		restricted, as a security-restricted operation), until
 *		pulse_restore_user.  An error in between is cleaned up by the
 *		(sub)transaction abort, which restores both.
 */
void
pulse_become_user(PulseAsUser *st, Oid userid, bool restricted)
{
	GetUserIdAndSecContext(&st->save_userid, &st->save_sec_context);
	st->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(userid, st->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
}

void
pulse_restore_user(PulseAsUser *st)
{
	SetUserIdAndSecContext(st->save_userid, st->save_sec_context);
	AtEOXact_GUC(true, st->save_nestlevel);
}

/*
 * pulse_catch_and_abort
 *		In a PG_CATCH around a transaction a background worker started
 *		itself: copies the error into cxt (which must not be a transaction's
 *		context), aborts the transaction, and returns the copy with cxt
 *		current again (the abort leaves TopMemoryContext current).
 */
ErrorData *
pulse_catch_and_abort(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);
	return edata;
}
