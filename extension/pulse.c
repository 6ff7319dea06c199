/*-------------------------------------------------------------------------
 *
 * pulse.c
 *		Entry point of the pulse extension: module magic and _PG_init, which
 *		defines the GUCs (guc.c, jobs.c, worker.c) and registers the
 *		background launcher (worker.c).
 *
 * Everything here runs once per backend, when the library is loaded (at
 * postmaster start when it is in shared_preload_libraries, otherwise on
 * first use).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "port.h"
#include "utils/guc.h"

#include "pulse.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	pulse_define_gucs();
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
