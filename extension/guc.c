/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The GUCs of pulse that more than one file reads (pulse.tenant) or
 *		that belong to no background machinery (the page and refresh
 *		settings).  The worker's and the job runner's own GUCs are defined
 *		by worker.c and jobs.c.
 *
 * The variables are plain backend-local globals, set by the GUC machinery.
 * This file depends on nothing else of pulse.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "guc_vars.h"

bool		pulse_require_index_for_page = false;
char	   *pulse_tenant = NULL;
int			pulse_refresh_work_mem = 65536;	/* kB */
int			pulse_keyed_tag_limit = 1000;

/*
 * pulse_define_gucs
 *		Defines the GUCs above.  Called once from _PG_init.
 */
void
pulse_define_gucs(void)
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

	DefineCustomIntVariable("pulse.refresh_work_mem",
							"work_mem of the statements that fill and refresh "
							"materialized aggregates.",
							"A full refresh hashes every group of the query; with the "
							"default work_mem of 4MB the planner falls back to sorting "
							"or spilling.  -1 uses work_mem.",
							&pulse_refresh_work_mem,
							65536, -1, MAX_KILOBYTES,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pulse.keyed_tag_limit",
							"Keyed cache tags of one key column a transaction bumps "
							"before it bumps the column's epoch instead.",
							"Beyond this many distinct values of a key column, a "
							"transaction bumps <tag>:<col>=* once, which invalidates "
							"every cached answer keyed by that column: a bounded cost "
							"per transaction, never a wrong answer.",
							&pulse_keyed_tag_limit,
							1000, 1, 1000000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
}
