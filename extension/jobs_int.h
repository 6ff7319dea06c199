/*-------------------------------------------------------------------------
 *
 * jobs_int.h
 *		What jobs.c (the SQL functions) and jobs_run.c (the worker's side)
 *		share.  jobs.c's header explains the states, the locks and the
 *		privileges.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_JOBS_INT_H
#define PULSE_JOBS_INT_H

#include "postgres.h"

#include "support.h"

#define JOB_CANCELED_MSG	"canceled by pulse.cancel_job"

/*
 * Act as owner, the owner of pulse.jobs, connected to SPI, until
 * job_owner_end.  Caller is in a transaction.
 */
extern void job_owner_begin(PulseAsUser *st, Oid owner);
extern void job_owner_end(PulseAsUser *st);

#endif							/* PULSE_JOBS_INT_H */
