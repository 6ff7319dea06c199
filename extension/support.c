/*-------------------------------------------------------------------------
 *
 * support.c
 *		Helpers shared by the files of pulse that need to act as another
 *		role (the job runner, cache-tag bumps) or that run transactions of
 *		their own in a background worker (the worker loop, aggregate
 *		refreshes, jobs).
 *
 * This file depends on nothing else of pulse, so that every other file may
 * call it without tying the house into a circle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "support.h"

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

/*
 * pulse_run_in_xact
 *		Runs work(arg) in a transaction of its own, with a snapshot and
 *		connected to SPI, and commits.  Returns NULL, or the error it threw
 *		(copied into the caller's memory context, the transaction aborted)
 *		for the caller to report and free.  Called outside any transaction
 *		(a background worker's loop); leaves the caller's memory context
 *		current.
 */
ErrorData *
pulse_run_in_xact(void (*work) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *edata = NULL;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		work(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		edata = pulse_catch_and_abort(cxt);
	}
	PG_END_TRY();

	/* commit and abort leave us in TopMemoryContext */
	MemoryContextSwitchTo(cxt);
	return edata;
}
