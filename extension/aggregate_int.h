/*-------------------------------------------------------------------------
 *
 * aggregate_int.h
 *		Private declarations of the materialized aggregates, shared by the
 *		aggregate*.c files and by nothing else (pulse.h declares the one
 *		function the worker calls, pulse_aggregates_refresh_due).
 *
 * The files, each calling only those listed before it:
 *	aggregate_common.c	SPI under the refresh's snapshot, names, the owner
 *	aggregate_catalog.c	the definition row, runs, tags, forgetting
 *	aggregate_analyze.c	query analysis: incremental or full, delta plan
 *	aggregate_capture.c	change capture: log table, trigger function, triggers
 *	aggregate_apply.c	recompute groups and apply the set-based difference
 *	aggregate_delta.c	delta maintenance: load, consume, apply deltas
 *	aggregate_refresh.c	one refresh; the worker's entry point
 *	aggregate.c			the SQL-callable functions
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_AGGREGATE_INT_H
#define PULSE_AGGREGATE_INT_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#include "support.h"

/* Above this many distinct changed keys (in any key column), refresh fully. */
#define AGG_MAX_INCREMENTAL_KEYS	100000

/* How a value column of a delta-maintained aggregate follows its changes. */
typedef enum AggDeltaKind
{
	AGG_DK_COUNT_STAR,			/* count(*): old + delta */
	AGG_DK_COUNT,				/* count(x): old + delta of the non-NULL x */
	AGG_DK_SUM,					/* sum(x): old + delta, NULL when no x left */
	AGG_DK_AVG,					/* avg(x): the new sum(x) / count of x */
	AGG_DK_MIN,					/* min(x): least(old, inserted), or recompute */
	AGG_DK_MAX					/* max(x): greatest(old, inserted), or recompute */
} AggDeltaKind;

/* One value column of a delta-maintained aggregate. */
typedef struct AggDeltaValue
{
	AggDeltaKind kind;
	char	   *arg;			/* the source column aggregated (not count(*)) */
	AttrNumber	attno;			/* its number */
	Oid			argtype;		/* its type */
	int			count_of;		/* SUM, AVG: value counting the non-NULL arg */
	int			sum_of;			/* AVG: value holding sum(arg) */
	bool		nonfinite;		/* SUM of numeric: NaN and +-Infinity counted */
	bool		track_scale;	/* SUM of numeric without typmod: scales kept */
} AggDeltaValue;

/* Delta maintenance of an incremental aggregate (see aggregate_delta.c). */
typedef struct AggDelta
{
	int			nvalues;
	AggDeltaValue *v;			/* one per value column, in their order */
	int			count_star;		/* the count(*) value */
} AggDelta;

/* What the analysis of a query found. */
typedef struct AggShape
{
	char	   *stmt;			/* the SELECT alone, without ';' */
	List	   *keys;			/* output names of the group keys (char *) */
	List	   *values;			/* the other output names (char *) */
	bool		incremental;
	const char *why_full;		/* when !incremental: the first obstacle */
	Oid			source;			/* incremental: the source table */
	List	   *source_cols;	/* incremental: its column for each key */
	List	   *tracked_rels;	/* tables whose writes are logged (Oid) */
	bool		tracked;		/* full mode: changes are tracked */
	AggDelta   *delta;			/* incremental: delta maintenance, or NULL */
} AggShape;

/* One row of pulse.aggregate_defs. */
typedef struct AggDef
{
	int32		id;
	Oid			relid;
	char	   *query;
	char	   *search_path;
	bool		incremental;
	bool		tracked;
	List	   *keys;
	List	   *values;
	bool		has_cron_job;
	int64		cron_jobid;
} AggDef;

/* How a refresh row lock is taken. */
typedef enum AggLock
{
	AGG_LOCK_WAIT,
	AGG_LOCK_SKIP
} AggLock;

/* State of one refresh, filled in as it goes (read after an error too). */
typedef struct AggRun
{
	int32		id;
	bool		full;			/* the mode in effect */
	TimestampTz started;
	int64		rows;			/* rows of the aggregate table changed */
} AggRun;

/* Changed keys consumed from the log by an incremental refresh. */
typedef struct AggKeys
{
	int64		nlogged;		/* log rows consumed */
	int			nkeys;
	Datum	   *arrays;			/* per key: array of distinct non-NULL keys */
	bool	   *array_null;		/* per key: no non-NULL key at all */
	bool	   *has_null;		/* per key: a NULL key was logged */
	Oid		   *array_types;
} AggKeys;

/* aggregate_common.c: see agg_key_join */
typedef struct AggKeyJoin
{
	char	   *notnull;
	char	   *eq;
	char	   *receq;
	bool		hashable;
} AggKeyJoin;

extern Snapshot agg_snapshot;
extern uint64 agg_exec(const char *sql, int nargs, Oid *argtypes,
					   Datum *values, const char *nulls);
extern uint64 agg_exec0(const char *sql);
extern char *agg_rel_name(Oid relid);
extern char *agg_pulse_object(int32 id, const char *suffix);
extern char *agg_column_list(List *names, const char *prefix);
extern Datum agg_list_to_text_array(List *names);
extern List *agg_text_array_to_list(Datum array);
extern char *agg_operator(Oid opno);
extern void agg_set_work_mem(void);
extern Oid	agg_owner(AggDef *def);
extern void agg_become_owner(AggDef *def, PulseAsUser *st);
extern void agg_restore_user(PulseAsUser *st);
extern void agg_key_join(AggDef *def, TupleDesc reldesc, const char *l,
						 const char *r, AggKeyJoin *kj);

/* aggregate_catalog.c */
extern int32 agg_resolve(text *name, Oid *relid);
extern AggDef *agg_load(int32 id, AggLock lock);
extern bool agg_cron_function_exists(const char *signature);
extern void agg_forget(AggDef *def);
extern void agg_bump_tag(const char *name);
extern void agg_record_run(AggRun *run, const char *error);

/* aggregate_analyze.c */
extern const char *agg_incremental_blocker(Query *q, AggShape *shape);
extern AggDelta *agg_delta_plan(Query *q, Oid source, const char **why);
extern void agg_analyze(const char *query, AggShape *shape);

/*
 * aggregate_capture.c: one column of a delta log besides the keys (see
 * agg_log_columns): its name, the expression that gives it its type in
 * CREATE TABLE ... AS over the source (alias s), its value for a new row
 * and for an old row of a transition table, and the aggregate that sums the
 * values of one group (in the trigger, and again in the refresh).
 */
typedef struct AggLogColumn
{
	char	   *name;
	char	   *type_expr;
	char	   *new_row;
	char	   *old_row;
	const char *combine;
} AggLogColumn;

extern List *agg_log_columns(AggDelta *d);
extern void agg_create_capture(int32 id, AggShape *shape);

/* aggregate_apply.c */
extern int64 agg_apply_rows(AggDef *def, const char *name, SPITupleTable *tt,
							uint64 ntuples, Oid *coltypes, int skipcol);
extern int64 agg_apply(AggDef *def, const char *name, AggKeys *keys);

/* aggregate_delta.c */
extern AggDelta *agg_delta_load(AggDef *def);
extern bool agg_consume_delta(AggDef *def, AggDelta *delta,
							  SPITupleTable **tt, uint64 *ntuples);
extern int64 agg_apply_delta(AggDef *def, const char *name, AggDelta *delta,
							 SPITupleTable *tt, uint64 ntuples);

/* aggregate_refresh.c */
extern bool agg_refresh(AggRun *run, bool force_full, AggLock lock);

#endif							/* PULSE_AGGREGATE_INT_H */
