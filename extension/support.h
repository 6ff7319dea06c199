/*-------------------------------------------------------------------------
 *
 * support.h
 *		Helpers of pulse that depend on nothing else of pulse: acting as
 *		another role, and the catch-and-abort of a background worker's own
 *		transaction.  See support.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_SUPPORT_H
#define PULSE_SUPPORT_H

#include "postgres.h"

/* Saved identity while acting as another role (pulse_become_user). */
typedef struct PulseAsUser
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} PulseAsUser;

/* Owner of table pulse.<relname>; InvalidOid if missing and missing_ok. */
extern Oid	pulse_table_owner(const char *relname, bool missing_ok);

/*
 * Act as userid with search_path pinned to pg_catalog until
 * pulse_restore_user; restricted adds SECURITY_RESTRICTED_OPERATION.  Caller
 * is in a transaction; an error in between is cleaned up by its abort.
 */
extern void pulse_become_user(PulseAsUser *st, Oid userid, bool restricted);
extern void pulse_restore_user(PulseAsUser *st);

/*
 * For the PG_CATCH of a background worker's own transaction: copies the
 * error into cxt, aborts the transaction and returns the copy, with cxt as
 * the current memory context.  The caller reports it and frees it.
 */
extern ErrorData *pulse_catch_and_abort(MemoryContext cxt);

/*
 * Runs work(arg) in a transaction of its own (snapshot, SPI connected) and
 * commits; returns NULL or the error it threw, the transaction aborted, for
 * the caller to report and free.  Called outside any transaction.
 */
extern ErrorData *pulse_run_in_xact(void (*work) (void *arg), void *arg);

#endif							/* PULSE_SUPPORT_H */
