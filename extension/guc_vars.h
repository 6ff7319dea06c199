/*-------------------------------------------------------------------------
 *
 * guc_vars.h
 *		The GUC variables of guc.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_GUC_VARS_H
#define PULSE_GUC_VARS_H

/* pulse.require_index_for_page: refuse pages whose plan sorts a scan */
extern bool pulse_require_index_for_page;

/* pulse.tenant: the tenant of the current transaction ('' when unset) */
extern char *pulse_tenant;

/* pulse.refresh_work_mem in kB, -1 for work_mem (aggregate fills and refreshes) */
extern int	pulse_refresh_work_mem;

/* pulse.keyed_tag_limit: keyed tags of one column a transaction bumps before its epoch */
extern int	pulse_keyed_tag_limit;

/* Defines the GUCs of guc.c.  Called once from _PG_init. */
extern void pulse_define_gucs(void);

#endif							/* PULSE_GUC_VARS_H */
