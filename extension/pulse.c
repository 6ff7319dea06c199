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

#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/guc.h"

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
