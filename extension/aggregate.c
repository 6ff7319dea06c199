/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *		Materialized aggregates: tables holding the result of a
 *		SELECT ... GROUP BY query, kept fresh by the pulse workers (worker.c)
 *		or on a pg_cron schedule, incrementally where the query allows.
 *
 * pulse.create_aggregate(name, query, refresh, schedule) analyses the query
 * with the server's parser and creates, for aggregate number N (the id of
 * its row in pulse.aggregate_defs):
 *
 *	- the aggregate table `name`, filled from the query, owned by its
 *	  creator, with a unique index NULLS NOT DISTINCT on the group keys;
 *	- pulse.aggregate_N_log, the change log;
 *	- pulse.aggregate_N_capture(), a SECURITY DEFINER trigger function, and
 *	  AFTER ... FOR EACH STATEMENT triggers on the source tables that call it;
 *	- with a schedule, a pg_cron job running the full refresh.
 *
 * drop_aggregate (or a plain DROP TABLE, through the sql_drop event trigger)
 * removes all of it; DROP EXTENSION pulse removes all but the table (the
 * log, the function and the triggers depend on the extension).  Fills and
 * refreshes run with work_mem = pulse.refresh_work_mem.
 *
 * Incremental mode.  The query qualifies when all of these hold:
 *	- it reads exactly one relation, a plain table without inheritance
 *	  children or a partitioned table (no joins, subqueries, WITH, set
 *	  operations, DISTINCT, window functions, LIMIT/OFFSET);
 *	- every GROUP BY item is a plain column of that table, and is in the
 *	  select list;
 *	- every other select-list item is a call of pg_catalog's count(*),
 *	  count(x), sum(x), avg(x), min(x) or max(x) (DISTINCT and FILTER
 *	  allowed);
 *	- WHERE, HAVING and the aggregate arguments call immutable functions only;
 *	- every group-key type has an array type.
 * (A partitioned source must be written through its parent: statement
 * triggers on the parent do not see writes aimed at a partition directly.)
 * Then the triggers log the group keys of the rows each statement inserts,
 * deletes or updates (old and new keys, from the transition tables), and a
 * refresh recomputes only the logged groups: it filters the query's output
 * on the logged keys (a filter the planner pushes below the GROUP BY, so the
 * source is read through its index on the keys when there is one), and
 * applies the difference to the same groups of the table.  A TRUNCATE of
 * the source, or more than AGG_MAX_INCREMENTAL_KEYS changed keys, makes the
 * next refresh full.
 *
 * Delta maintenance (a kind of incremental refresh, same mode name).  When
 * moreover
 *	- the query has no WHERE and no HAVING clause;
 *	- no aggregate uses DISTINCT, FILTER or ORDER BY, and each one is
 *	  count(*) or takes a plain column of the source;
 *	- the select list has a count(*) (it tells when a group vanishes);
 *	- sum(x) sums smallint, integer, bigint or numeric, and avg(x) averages
 *	  smallint, integer or bigint (exact: float sums would drift);
 *	- the non-NULL x of every sum(x) and avg(x) are counted: count(x) is in
 *	  the select list, or x is NOT NULL (then count(*) counts them);
 *	- avg(x) comes with sum(x) in the select list;
 *	- min(x) and max(x) take a type that is not collatable;
 * the triggers log, per statement and per group touched, the change of
 * count(*), of each count(x) and of each sum(x) (as numeric), the min or max
 * of the inserted values of each min(x) or max(x), and the min or max of the
 * deleted values (an UPDATE logs its old rows as deletions and its new rows
 * as insertions).  A refresh sums the deltas per group and computes the new
 * rows from the table's current ones: counts and sums add up (a sum is NULL
 * when its count is 0), avg = sum / count (numeric division, as avg does),
 * min = least(old, inserted), max = greatest(old, inserted), and a group
 * whose count(*) falls to 0 is deleted.  A group is recomputed from the
 * source only when a deleted value is at or beyond its new min or max (the
 * extreme may have gone).  No source row is read otherwise.  numeric sums
 * are equal to the query's but may show more trailing zeros (a scale the
 * deleted values had).  A refresh analyses the query again: when a NOT NULL
 * constraint it relied on has been dropped it recomputes the touched groups
 * as above (the log holds their keys too).  Other incremental queries keep
 * recomputing their touched groups.
 *
 * Full mode (any other GROUP BY query): the refresh recomputes the whole
 * query and applies the difference.
 *
 * Either way the difference is computed set-based (agg_apply): one SELECT
 * joins the fresh groups to the table's rows on the keys and keeps the new,
 * vanished and changed groups only; it may run in parallel, which a
 * data-modifying statement never does.  Then one DELETE (vanished groups)
 * and one INSERT ... ON CONFLICT (new and changed groups) write just those
 * rows; unchanged groups are not written.
 * A full-mode aggregate is "tracked" when the rewritten query reads only
 * plain or partitioned tables and calls immutable functions only: triggers on
 * every table it reads log one row per writing statement, and the worker
 * refreshes it only when such rows are pending.  An untracked one (it calls
 * now(), reads a foreign table, a catalog, a materialized view...) is
 * refreshed every interval.
 *
 * Locking and consistency rules:
 *	- One refresh of an aggregate at a time: a refresh locks the aggregate's
 *	  pulse.aggregate_defs row FOR NO KEY UPDATE first (the worker with SKIP
 *	  LOCKED, so it never queues behind a manual refresh).
 *	- A refresh changes the aggregate table with plain DELETE and
 *	  INSERT ... ON CONFLICT only (RowExclusiveLock): readers never wait, and
 *	  MVCC shows them the table as of before or after a refresh, never half.
 *	- The log is consumed by a DELETE in the refresh's own transaction, and
 *	  the groups are recomputed with the same snapshot (agg_snapshot, taken
 *	  after the definition's row lock): the source rows a refresh reads are
 *	  exactly those whose log rows it consumes, which deltas, applied once
 *	  each, require.  So a log row disappears only with the commit of a
 *	  refresh that saw its change, and a crash or an error anywhere leaves
 *	  both the table and the log as they were.  A change that commits while
 *	  a refresh runs keeps its log row and is applied by the next refresh.
 *	- Writers only ever INSERT into the log, so writers never wait for each
 *	  other or for a refresh.  Source rows and their log rows commit together.
 *	- create_aggregate creates the triggers before it fills the table:
 *	  CREATE TRIGGER's ShareRowExclusiveLock on the sources, held until
 *	  commit, keeps writers out while the table is filled.
 *	- The query runs as the owner of the aggregate table, with the
 *	  search_path of its creation, as a security-restricted operation (like
 *	  REFRESH MATERIALIZED VIEW); the log and the bookkeeping are handled as
 *	  the caller (the worker runs as the bootstrap superuser).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/dependency.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_extension.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "pulse.h"

/* Above this many distinct changed keys (in any key column), refresh fully. */
#define AGG_MAX_INCREMENTAL_KEYS	100000

/*
 * Up to this many changed rows, a refresh holds its difference in memory and
 * applies it with two statements; above, with one streaming statement (see
 * agg_apply).  Overridable at build time to test the streaming path.
 */
#ifndef AGG_MAX_DIFF_ROWS
#define AGG_MAX_DIFF_ROWS			100000
#endif

/* Runs kept in pulse.aggregate_runs per aggregate; older ones are deleted. */
#define AGG_RUNS_KEPT				200

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
} AggDeltaValue;

/* Delta maintenance of an incremental aggregate (see the file header). */
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

static Oid	agg_owner(AggDef *def);

PG_FUNCTION_INFO_V1(pulse_create_aggregate);
PG_FUNCTION_INFO_V1(pulse_refresh_aggregate);
PG_FUNCTION_INFO_V1(pulse_drop_aggregate);
PG_FUNCTION_INFO_V1(pulse_aggregate_forget);

/* ----------------------------------------------------------------
 *		Small helpers
 * ----------------------------------------------------------------
 */

/*
 * Runs sql through SPI with parameters; caller is connected to SPI.
 * Returns SPI_processed.  SQL errors are thrown by SPI itself.
 */
/*
 * The snapshot of the refresh under way, or NULL: while it is set, agg_exec
 * runs every statement with it (its command id advanced before each one),
 * so that the log rows a refresh consumes and the source rows it reads are
 * those of the same committed transactions.  Set and reset by agg_refresh.
 */
static Snapshot agg_snapshot = NULL;

static uint64
agg_exec(const char *sql, int nargs, Oid *argtypes, Datum *values,
		 const char *nulls)
{
	int			rc;

	if (agg_snapshot != NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
											  CURSOR_OPT_PARALLEL_OK);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare_cursor failed: %s: %s",
				 SPI_result_code_string(SPI_result), sql);
		rc = SPI_execute_snapshot(plan, values, nulls, agg_snapshot,
								  InvalidSnapshot, false, true, 0);
		SPI_freeplan(plan);
	}
	else
		rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s: %s",
			 SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/* agg_exec without parameters. */
static uint64
agg_exec0(const char *sql)
{
	return agg_exec(sql, 0, NULL, NULL, NULL);
}

/* Schema-qualified, quoted name of a relation (NULL if it is gone). */
static char *
agg_rel_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  relname);
}

/* The quoted name of an object of aggregate id in schema pulse. */
static char *
agg_pulse_object(int32 id, const char *suffix)
{
	return psprintf("pulse.aggregate_%d_%s", id, suffix);
}

/* Comma-separated list of the quoted names, each preceded by prefix. */
static char *
agg_column_list(List *names, const char *prefix)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, names)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfo(&buf, "%s%s", prefix,
						 quote_identifier((char *) lfirst(lc)));
	}
	return buf.data;
}

static Datum
agg_list_to_text_array(List *names)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	ListCell   *lc;

	foreach(lc, names)
		elems[foreach_current_index(lc)] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, list_length(names), TEXTOID,
										   -1, false, TYPALIGN_INT));
}

static List *
agg_text_array_to_list(Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

/* Interval as microseconds, months counted as 30 days (sign test only). */
static int64
agg_interval_usecs(Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* ----------------------------------------------------------------
 *		Query analysis
 * ----------------------------------------------------------------
 */

/* Is aggfnoid one of pg_catalog's count, sum, avg, min, max? */
static bool
agg_is_supported_aggregate(Oid aggfnoid)
{
	static const char *const names[] = {"count", "sum", "avg", "min", "max"};
	char	   *fname;

	if (get_func_namespace(aggfnoid) != PG_CATALOG_NAMESPACE)
		return false;
	fname = get_func_name(aggfnoid);
	for (int i = 0; i < lengthof(names); i++)
		if (strcmp(fname, names[i]) == 0)
			return true;
	return false;
}

/*
 * Why the (analysed, not rewritten) query cannot be refreshed incrementally,
 * or NULL when it can; fills shape->source and shape->source_cols.
 */
static const char *
agg_incremental_blocker(Query *q, AggShape *shape)
{
	RangeTblEntry *rte;
	char		relkind;
	ListCell   *lc;

	if (q->cteList != NIL)
		return "it has a WITH clause";
	if (list_length(q->rtable) != 1 || list_length(q->jointree->fromlist) != 1)
		return "it reads more than one relation";
	rte = linitial_node(RangeTblEntry, q->rtable);
	if (rte->rtekind != RTE_RELATION)
		return "it does not read a table directly";
	relkind = get_rel_relkind(rte->relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return "its source is not a table";
	if (relkind == RELKIND_RELATION && rte->inh && has_subclass(rte->relid))
		return "its source table has inheritance children";
	if (IsCatalogRelationOid(rte->relid))
		return "its source is a system catalog";
	if (q->hasSubLinks)
		return "it contains a subquery";
	if (q->hasWindowFuncs)
		return "it uses window functions";
	if (q->distinctClause != NIL)
		return "it uses DISTINCT";
	if (q->limitCount != NULL || q->limitOffset != NULL)
		return "it uses LIMIT or OFFSET";
	if (contain_mutable_functions((Node *) q))
		return "it calls a function that is not immutable";

	shape->source = rte->relid;
	shape->source_cols = NIL;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		bool		is_key;

		if (tle->resjunk)
			continue;
		is_key = tle->ressortgroupref != 0 &&
			get_sortgroupref_clause_noerr(tle->ressortgroupref,
										  q->groupClause) != NULL;
		if (is_key)
		{
			Var		   *var = (Var *) tle->expr;

			if (!IsA(var, Var) || var->varlevelsup != 0 || var->varattno <= 0)
				return psprintf("group key \"%s\" is not a plain column of the table",
								tle->resname);
			if (!OidIsValid(get_array_type(var->vartype)))
				return psprintf("the type of group key \"%s\" has no array type",
								tle->resname);
			shape->source_cols = lappend(shape->source_cols,
										 get_attname(rte->relid, var->varattno,
													 false));
		}
		else
		{
			Aggref	   *agg = (Aggref *) tle->expr;

			if (!IsA(agg, Aggref) || agg->agglevelsup != 0 ||
				!agg_is_supported_aggregate(agg->aggfnoid))
				return psprintf("select-list item \"%s\" is neither a group key nor count, sum, avg, min or max",
								tle->resname);
		}
	}
	return NULL;
}

/* Is column attno of relation relid declared NOT NULL? */
static bool
agg_attnotnull(Oid relid, AttrNumber attno)
{
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid),
									  Int16GetDatum(attno));
	bool		result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for attribute %d of relation %u",
			 attno, relid);
	result = ((Form_pg_attribute) GETSTRUCT(tup))->attnotnull;
	ReleaseSysCache(tup);
	return result;
}

/*
 * How the values of an incremental query (q, reading table source) can be
 * maintained from deltas, or NULL (with *why) when its touched groups must
 * be recomputed.  See the file header for the conditions.  The NOT NULL
 * constraints it relies on are read now: a refresh calls it again.
 */
static AggDelta *
agg_delta_plan(Query *q, Oid source, const char **why)
{
	AggDelta   *d = palloc0(sizeof(AggDelta));
	ListCell   *lc;
	int			i = 0;

	*why = NULL;
	if (q->havingQual != NULL)
		*why = "it has a HAVING clause";
	else if (q->jointree->quals != NULL)
		*why = "it has a WHERE clause";
	if (*why)
		return NULL;

	d->v = palloc0(sizeof(AggDeltaValue) * (list_length(q->targetList) + 1));
	d->count_star = -1;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		AggDeltaValue *v = &d->v[i];
		Aggref	   *agg;
		char	   *fname;
		Var		   *var;

		if (tle->resjunk ||
			(tle->ressortgroupref != 0 &&
			 get_sortgroupref_clause_noerr(tle->ressortgroupref,
										   q->groupClause) != NULL))
			continue;
		agg = (Aggref *) tle->expr;
		Assert(IsA(agg, Aggref));
		fname = get_func_name(agg->aggfnoid);
		v->count_of = v->sum_of = -1;
		if (agg->aggdistinct != NIL || agg->aggfilter != NULL ||
			agg->aggorder != NIL)
		{
			*why = "an aggregate uses DISTINCT, FILTER or ORDER BY";
			return NULL;
		}
		if (agg->aggstar)
		{
			v->kind = AGG_DK_COUNT_STAR;
			if (d->count_star < 0)
				d->count_star = i;
			i++;
			continue;
		}
		var = (Var *) (list_length(agg->args) == 1 ?
					   linitial_node(TargetEntry, agg->args)->expr : NULL);
		if (var == NULL || !IsA(var, Var) || var->varattno <= 0)
		{
			*why = "an aggregate argument is not a plain column";
			return NULL;
		}
		v->attno = var->varattno;
		v->argtype = var->vartype;
		v->arg = get_attname(source, var->varattno, false);
		if (strcmp(fname, "count") == 0)
			v->kind = AGG_DK_COUNT;
		else if (strcmp(fname, "sum") == 0 || strcmp(fname, "avg") == 0)
		{
			v->kind = fname[0] == 's' ? AGG_DK_SUM : AGG_DK_AVG;
			if (v->argtype != INT2OID && v->argtype != INT4OID &&
				v->argtype != INT8OID &&
				(v->argtype != NUMERICOID || v->kind == AGG_DK_AVG))
			{
				*why = "it sums or averages a type whose sum is not exact";
				return NULL;
			}
		}
		else
		{
			TypeCacheEntry *tc = lookup_type_cache(v->argtype,
												   TYPECACHE_LT_OPR | TYPECACHE_GT_OPR);

			v->kind = strcmp(fname, "min") == 0 ? AGG_DK_MIN : AGG_DK_MAX;
			if (type_is_collatable(v->argtype) ||
				!OidIsValid(get_array_type(v->argtype)) ||
				!OidIsValid(tc->lt_opr) || !OidIsValid(tc->gt_opr))
			{
				*why = "it takes the minimum or maximum of a collatable or unordered type";
				return NULL;
			}
		}
		i++;
	}
	d->nvalues = i;
	if (d->count_star < 0)
	{
		*why = "it has no count(*)";
		return NULL;
	}

	/* what counts the non-NULL arguments of each sum and avg */
	for (i = 0; i < d->nvalues; i++)
	{
		AggDeltaValue *v = &d->v[i];

		if (v->kind != AGG_DK_SUM && v->kind != AGG_DK_AVG)
			continue;
		for (int j = 0; j < d->nvalues; j++)
		{
			if (d->v[j].kind == AGG_DK_COUNT && d->v[j].attno == v->attno &&
				v->count_of < 0)
				v->count_of = j;
			if (d->v[j].kind == AGG_DK_SUM && d->v[j].attno == v->attno &&
				v->sum_of < 0)
				v->sum_of = j;
		}
		if (v->count_of < 0 && agg_attnotnull(source, v->attno))
			v->count_of = d->count_star;
		if (v->count_of < 0)
		{
			*why = "it sums or averages a nullable column without counting it";
			return NULL;
		}
		if (v->kind == AGG_DK_AVG && v->sum_of < 0)
		{
			*why = "it averages a column without summing it";
			return NULL;
		}
	}
	return d;
}

/* Collects the relations a rewritten query reads; see agg_analyze. */
static bool
agg_collect_relations(Node *node, AggShape *shape)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;
		ListCell   *lc;

		foreach(lc, q->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
			char		relkind;

			if (rte->rtekind != RTE_RELATION)
				continue;
			if (get_rel_persistence(rte->relid) == RELPERSISTENCE_TEMP)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("an aggregate cannot read temporary table \"%s\"",
								get_rel_name(rte->relid)),
						 errdetail("The pulse workers refresh aggregates from their own sessions.")));
			relkind = get_rel_relkind(rte->relid);
			if (relkind == RELKIND_VIEW)
				continue;		/* the rewriter expanded it; this is its
								 * placeholder for permission checks */
			if ((relkind == RELKIND_RELATION ||
				 relkind == RELKIND_PARTITIONED_TABLE) &&
				!IsCatalogRelationOid(rte->relid))
				shape->tracked_rels = list_append_unique_oid(shape->tracked_rels,
															 rte->relid);
			else
				shape->tracked = false;
		}
		return query_tree_walker(q, agg_collect_relations, shape, 0);
	}
	return expression_tree_walker(node, agg_collect_relations, shape);
}

/*
 * Error context while parsing an aggregate's query: reports the position of
 * a syntax error inside the query, not inside the calling statement.
 */
static void
agg_parse_error_callback(void *arg)
{
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
	errcontext("aggregate query");
}

/*
 * Parses and analyses query (as the current user, with the current
 * search_path), raising an error when it is not a usable SELECT ... GROUP BY,
 * and classifies it.
 */
static void
agg_analyze(const char *query, AggShape *shape)
{
	List	   *raw;
	RawStmt    *rs;
	Query	   *q;
	List	   *rewritten;
	ListCell   *lc;
	int			len;
	ErrorContextCallback errcb;

	memset(shape, 0, sizeof(*shape));

	errcb.callback = agg_parse_error_callback;
	errcb.arg = (void *) query;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	raw = raw_parser(query, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1 ||
		!IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("aggregate query must be a single SELECT statement")));
	rs = linitial_node(RawStmt, raw);
	if (((SelectStmt *) rs->stmt)->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("aggregate query must not use SELECT INTO")));

	len = rs->stmt_len > 0 ? rs->stmt_len : (int) strlen(query) - rs->stmt_location;
	shape->stmt = pnstrdup(query + rs->stmt_location, len);

	q = parse_analyze_fixedparams(copyObject(rs), query, NULL, 0, NULL);
	error_context_stack = errcb.previous;

	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL ||
		q->setOperations != NULL || q->groupClause == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("aggregate query must have a GROUP BY clause"),
				 errhint("A materialized aggregate holds one row per group: write SELECT keys, aggregates FROM ... GROUP BY keys.")));
	if (q->groupingSets != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate query must not use GROUPING SETS, ROLLUP or CUBE")));
	if (q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate query must not call set-returning functions in its select list")));
	if (q->hasModifyingCTE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate query must not modify data")));

	foreach(lc, q->groupClause)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, q->targetList);

		if (tle->resjunk)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("every GROUP BY expression of an aggregate query must be in its select list"),
					 errhint("The group keys are the columns of the aggregate table's unique index.")));
	}
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (tle->resjunk)
			continue;
		if (strncmp(tle->resname, "__pulse", 7) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("column name \"%s\" is reserved for pulse", tle->resname)));
		if (tle->ressortgroupref != 0 &&
			get_sortgroupref_clause_noerr(tle->ressortgroupref, q->groupClause) != NULL)
			shape->keys = lappend(shape->keys, pstrdup(tle->resname));
		else
			shape->values = lappend(shape->values, pstrdup(tle->resname));
	}

	shape->why_full = agg_incremental_blocker(q, shape);
	shape->incremental = (shape->why_full == NULL);
	if (shape->incremental)
	{
		const char *why;

		shape->delta = agg_delta_plan(q, shape->source, &why);
		if (shape->delta == NULL)
			ereport(DEBUG1,
					(errmsg_internal("aggregate query recomputes its touched groups because %s",
									 why)));
	}

	/* Which tables feed it, views expanded; checks for temporary tables. */
	shape->tracked = true;
	rewritten = pg_analyze_and_rewrite_fixedparams(copyObject(rs), query,
												   NULL, 0, NULL);
	foreach(lc, rewritten)
	{
		Query	   *rq = lfirst_node(Query, lc);

		(void) agg_collect_relations((Node *) rq, shape);
		if (contain_mutable_functions((Node *) rq))
			shape->tracked = false;
	}
	if (shape->incremental)
	{
		shape->tracked = true;
		shape->tracked_rels = list_make1_oid(shape->source);
	}
}

/* ----------------------------------------------------------------
 *		Catalog access
 * ----------------------------------------------------------------
 */

/*
 * The id of the aggregate named name (as the user spells a table name), and
 * its table's OID.  Raises 42704 when there is no such aggregate.  Caller is
 * connected to SPI.
 */
static int32
agg_resolve(text *name, Oid *relid)
{
	char	   *cname = text_to_cstring(name);
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(cname));
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	bool		isnull;

	*relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(*relid))
	{
		values[0] = ObjectIdGetDatum(*relid);
		if (agg_exec("SELECT id FROM pulse.aggregate_defs WHERE relid = $1",
					 1, argtypes, values, NULL) == 1)
			return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1,
											   &isnull));
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("aggregate \"%s\" does not exist", cname),
			 errhint("pulse.aggregates lists the materialized aggregates of this database.")));
	return 0;					/* keep compiler quiet */
}

/*
 * Reads (and locks, for a refresh or a drop) the definition of aggregate id.
 * Returns NULL when it is gone, or locked by someone else under
 * AGG_LOCK_SKIP.  Caller is connected to SPI; the result lives in the SPI
 * procedure context.
 */
static AggDef *
agg_load(int32 id, AggLock lock)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	HeapTuple	tup;
	TupleDesc	desc;
	AggDef	   *def;
	bool		isnull;
	Datum		d;

	if (agg_exec(psprintf("SELECT relid, query, search_path, mode = 'incremental', "
						  "tracked, key_columns, value_columns, cron_jobid "
						  "FROM pulse.aggregate_defs WHERE id = $1 "
						  "FOR NO KEY UPDATE%s",
						  lock == AGG_LOCK_SKIP ? " SKIP LOCKED" : ""),
				 1, argtypes, values, NULL) != 1)
		return NULL;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	def = palloc0(sizeof(AggDef));
	def->id = id;
	def->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	def->query = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	def->search_path = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
	def->incremental = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	def->tracked = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	def->keys = agg_text_array_to_list(SPI_getbinval(tup, desc, 6, &isnull));
	def->values = agg_text_array_to_list(SPI_getbinval(tup, desc, 7, &isnull));
	d = SPI_getbinval(tup, desc, 8, &isnull);
	def->has_cron_job = !isnull;
	def->cron_jobid = isnull ? 0 : DatumGetInt64(d);
	return def;
}

/* Does the function named by signature (regprocedure syntax) exist? */
static bool
agg_cron_function_exists(const char *signature)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(signature)};
	bool		isnull;

	agg_exec("SELECT to_regprocedure($1) IS NOT NULL", 1, argtypes, values, NULL);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Removes everything aggregate def owns except its table: triggers, capture
 * function, log, pg_cron job and definition (its runs go with it).  Caller
 * is connected to SPI.
 */
static void
agg_forget(AggDef *def)
{
	char	   *capture = agg_pulse_object(def->id, "capture");
	Oid			argtypes[1];
	Datum		values[1];
	uint64		ntrig;
	char	  **drops;

	argtypes[0] = TEXTOID;
	values[0] = CStringGetTextDatum(psprintf("%s()", capture));
	ntrig = agg_exec("SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) "
					 "FROM pg_catalog.pg_trigger t "
					 "WHERE t.tgfoid = to_regprocedure($1)",
					 1, argtypes, values, NULL);
	drops = palloc(sizeof(char *) * (ntrig + 1));
	for (uint64 i = 0; i < ntrig; i++)
		drops[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	for (uint64 i = 0; i < ntrig; i++)
		agg_exec0(drops[i]);

	if (agg_exec("SELECT 1 WHERE to_regprocedure($1) IS NOT NULL",
				 1, argtypes, values, NULL) == 1)
		agg_exec0(psprintf("DROP FUNCTION %s()", capture));
	values[0] = CStringGetTextDatum(agg_pulse_object(def->id, "log"));
	if (agg_exec("SELECT 1 WHERE to_regclass($1) IS NOT NULL",
				 1, argtypes, values, NULL) == 1)
		agg_exec0(psprintf("DROP TABLE %s", agg_pulse_object(def->id, "log")));

	if (def->has_cron_job &&
		get_extension_oid("pg_cron", true) != InvalidOid &&
		agg_cron_function_exists("cron.unschedule(bigint)"))
	{
		argtypes[0] = INT8OID;
		values[0] = Int64GetDatum(def->cron_jobid);
		if (agg_exec("SELECT 1 FROM cron.job WHERE jobid = $1",
					 1, argtypes, values, NULL) == 1)
			agg_exec("SELECT cron.unschedule($1)", 1, argtypes, values, NULL);
	}

	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(def->id);
	agg_exec("DELETE FROM pulse.aggregate_defs WHERE id = $1",
			 1, argtypes, values, NULL);
}

/* ----------------------------------------------------------------
 *		Refresh
 * ----------------------------------------------------------------
 */

/*
 * Sets work_mem to pulse.refresh_work_mem until the caller's
 * AtEOXact_GUC(false, nestlevel).
 */
static void
agg_set_work_mem(void)
{
	if (pulse_refresh_work_mem > 0)
		(void) set_config_option("work_mem",
								 psprintf("%d", pulse_refresh_work_mem),
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Consumes the whole change log of def (full refresh).  Caller is connected
 * to SPI, in the refresh's transaction.
 */
static void
agg_consume_all(AggDef *def)
{
	agg_exec0(psprintf("DELETE FROM %s", agg_pulse_object(def->id, "log")));
}

/*
 * Consumes the change log of an incremental aggregate and collects the
 * changed keys.  Returns false when the refresh must be full instead (a
 * TRUNCATE was logged, or too many keys changed).
 */
static bool
agg_consume_keys(AggDef *def, AggKeys *keys)
{
	StringInfoData sql;
	ListCell   *lc;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bool		full;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH d AS (DELETE FROM %s RETURNING *) "
					 "SELECT count(*), coalesce(bool_or(d.__pulse_full), false)",
					 agg_pulse_object(def->id, "log"));
	foreach(lc, def->keys)
	{
		const char *k = quote_identifier((char *) lfirst(lc));

		appendStringInfo(&sql,
						 ", array_agg(DISTINCT d.%s) FILTER (WHERE d.%s IS NOT NULL)"
						 ", coalesce(bool_or(d.%s IS NULL), false)",
						 k, k, k);
	}
	appendStringInfoString(&sql, " FROM d");
	agg_exec0(sql.data);

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	keys->nlogged = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	full = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	keys->nkeys = list_length(def->keys);
	keys->arrays = palloc0(sizeof(Datum) * keys->nkeys);
	keys->array_null = palloc0(sizeof(bool) * keys->nkeys);
	keys->has_null = palloc0(sizeof(bool) * keys->nkeys);
	keys->array_types = palloc0(sizeof(Oid) * keys->nkeys);
	for (int i = 0; i < keys->nkeys; i++)
	{
		Datum		arr = SPI_getbinval(tup, desc, 3 + 2 * i, &isnull);

		keys->array_types[i] = SPI_gettypeid(desc, 3 + 2 * i);
		keys->array_null[i] = isnull;
		if (!isnull)
		{
			ArrayType  *a = DatumGetArrayTypePCopy(arr);

			keys->arrays[i] = PointerGetDatum(a);
			if (ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) > AGG_MAX_INCREMENTAL_KEYS)
				full = true;
		}
		keys->has_null[i] = DatumGetBool(SPI_getbinval(tup, desc, 4 + 2 * i,
													   &isnull));
	}
	return !full;
}

/*
 * "alias.k1 = ANY($1) [OR alias.k1 IS NULL] AND ..." restricting rows to the
 * changed keys (a superset of them when there are several key columns).
 */
static void
agg_append_key_filter(StringInfo sql, AggDef *def, AggKeys *keys,
					  const char *alias)
{
	ListCell   *lc;

	foreach(lc, def->keys)
	{
		int			i = foreach_current_index(lc);
		const char *k = quote_identifier((char *) lfirst(lc));

		appendStringInfo(sql, "%s(%s.%s = ANY($%d)%s%s%s)",
						 i > 0 ? " AND " : "",
						 alias, k, i + 1,
						 keys->has_null[i] ? psprintf(" OR %s.", alias) : "",
						 keys->has_null[i] ? k : "",
						 keys->has_null[i] ? " IS NULL" : "");
	}
}

/* "ROW(alias.v1, ...)" of the value columns, as text when not comparable. */
static void
agg_append_values_row(StringInfo sql, AggDef *def, TupleDesc reldesc,
					  const char *alias)
{
	ListCell   *lc;

	appendStringInfoString(sql, "ROW(");
	foreach(lc, def->values)
	{
		int			attno = SPI_fnumber(reldesc, (char *) lfirst(lc));
		bool		comparable = false;

		if (attno > 0)
			comparable = OidIsValid(lookup_type_cache(TupleDescAttr(reldesc, attno - 1)->atttypid,
													  TYPECACHE_EQ_OPR)->eq_opr);
		/* compare the text of values whose type has no equality */
		appendStringInfo(sql, "%s%s.%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 alias, quote_identifier((char *) lfirst(lc)),
						 comparable ? "" : "::text");
	}
	appendStringInfoChar(sql, ')');
}

/*
 * One branch of agg_diff_query: the FULL JOIN of the fresh groups (CTE f)
 * and the table's rows that pass rowfilter (on both sides, none if NULL),
 * on joincond, keeping the rows to change.
 */
static void
agg_append_diff_branch(StringInfo sql, AggDef *def, AggKeys *keys,
					   const char *name, TupleDesc reldesc,
					   const char *rowfilter, const char *joincond)
{
	appendStringInfo(sql,
					 "SELECT a.__pulse_ctid, f.__pulse_f, %s%s%s FROM ",
					 agg_column_list(def->keys, "f."),
					 def->values ? ", " : "",
					 agg_column_list(def->values, "f."));
	if (rowfilter)
		appendStringInfo(sql, "(SELECT * FROM f WHERE %s) f", rowfilter);
	else
		appendStringInfoString(sql, "f");
	appendStringInfo(sql, " FULL JOIN (SELECT a.ctid AS __pulse_ctid, %s%s%s FROM %s a",
					 agg_column_list(def->keys, "a."),
					 def->values ? ", " : "",
					 agg_column_list(def->values, "a."),
					 name);
	if (keys != NULL || rowfilter)
		appendStringInfoString(sql, " WHERE ");
	if (keys != NULL)
		agg_append_key_filter(sql, def, keys, "a");
	if (keys != NULL && rowfilter)
		appendStringInfoString(sql, " AND ");
	if (rowfilter)
		appendStringInfoString(sql, rowfilter);
	appendStringInfo(sql, ") a ON %s "
					 "WHERE f.__pulse_f IS NULL OR a.__pulse_ctid IS NULL",
					 joincond);
	if (def->values != NIL)
	{
		appendStringInfoString(sql, " OR ");
		agg_append_values_row(sql, def, reldesc, "a");
		appendStringInfoString(sql, " IS DISTINCT FROM ");
		agg_append_values_row(sql, def, reldesc, "f");
	}
}

/* "OPERATOR(schema.name)" designating operator opno whatever the search_path. */
static char *
agg_operator(Oid opno)
{
	HeapTuple	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Form_pg_operator op;
	char	   *result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	op = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tup);
	return result;
}

/*
 * The SELECT computing the difference between the query's groups of keys
 * (all groups when keys is NULL) and the aggregate table: one row per group
 * to change, columns
 *	__pulse_ctid	the table's row (NULL: a new group, to insert),
 *	__pulse_f		true, or NULL for a vanished group (to delete),
 *	keys, values	the fresh row (NULLs for a vanished group).
 * A FULL JOIN of the fresh groups with the table's rows on the keys keeps
 * the new, the vanished and the changed groups only; an unchanged group
 * costs a hash probe.  The groups whose keys are all non-NULL are joined
 * with "=" (a hash join); the others, if any, with record equality, which
 * matches NULL keys as the unique index does (a merge join that sorts the
 * records: slower, so only for them, or for all when a key type's equality
 * cannot be hashed).  Being a plain SELECT, it may run in parallel.
 * reldesc is the table's.
 */
static char *
agg_diff_query(AggDef *def, const char *name, AggKeys *keys, TupleDesc reldesc)
{
	StringInfoData sql;
	StringInfoData notnull;
	StringInfoData eq;
	char	   *receq;
	ListCell   *lc;
	bool		null_keys = (keys == NULL);
	bool		hashable = true;

	initStringInfo(&notnull);
	initStringInfo(&eq);
	foreach(lc, def->keys)
	{
		const char *k = quote_identifier((char *) lfirst(lc));
		int			attno = SPI_fnumber(reldesc, (char *) lfirst(lc));

		Oid			typid = attno > 0 ? TupleDescAttr(reldesc, attno - 1)->atttypid : InvalidOid;
		Oid			eqop = OidIsValid(typid) ?
			lookup_type_cache(typid, TYPECACHE_EQ_OPR)->eq_opr : InvalidOid;

		appendStringInfo(&notnull, "%s%s IS NOT NULL",
						 foreach_current_index(lc) > 0 ? " AND " : "", k);
		if (keys != NULL && keys->has_null[foreach_current_index(lc)])
			null_keys = true;
		/* the type's default equality, spelled out: search_path-proof */
		if (!OidIsValid(eqop) || !op_hashjoinable(eqop, typid))
			hashable = false;
		else
			appendStringInfo(&eq, "%sf.%s %s a.%s",
							 foreach_current_index(lc) > 0 ? " AND " : "", k,
							 agg_operator(eqop), k);
	}
	receq = psprintf("ROW(%s)::record = ROW(%s)::record",
					 agg_column_list(def->keys, "f."),
					 agg_column_list(def->keys, "a."));

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH f AS MATERIALIZED (SELECT q.*, true AS __pulse_f FROM (%s\n) q",
					 def->query);
	if (keys != NULL)
	{
		appendStringInfoString(&sql, " WHERE ");
		agg_append_key_filter(&sql, def, keys, "q");
	}
	appendStringInfoString(&sql, ") ");
	if (!hashable)
		agg_append_diff_branch(&sql, def, keys, name, reldesc, NULL, receq);
	else
	{
		agg_append_diff_branch(&sql, def, keys, name, reldesc, notnull.data,
							   eq.data);
		/* keys is NULL, or NULL keys were logged: the groups with NULL keys */
		if (null_keys)
		{
			appendStringInfoString(&sql, " UNION ALL ");
			agg_append_diff_branch(&sql, def, keys, name, reldesc,
								   psprintf("NOT (%s)", notnull.data), receq);
		}
	}
	return sql.data;
}

/* "INSERT INTO name AS a (cols) " for the upsert of agg_apply. */
static void
agg_append_insert(StringInfo sql, AggDef *def, const char *name)
{
	appendStringInfo(sql, "INSERT INTO %s AS a (%s%s%s) ", name,
					 agg_column_list(def->keys, ""),
					 def->values ? ", " : "",
					 agg_column_list(def->values, ""));
}

/* " ON CONFLICT (keys) DO ..." for the upsert of agg_apply. */
static void
agg_append_on_conflict(StringInfo sql, AggDef *def)
{
	ListCell   *lc;

	appendStringInfo(sql, " ON CONFLICT (%s) DO ", agg_column_list(def->keys, ""));
	if (def->values == NIL)
	{
		appendStringInfoString(sql, "NOTHING");
		return;
	}
	appendStringInfoString(sql, "UPDATE SET ");
	foreach(lc, def->values)
	{
		const char *v = quote_identifier((char *) lfirst(lc));

		appendStringInfo(sql, "%s%s = excluded.%s",
						 foreach_current_index(lc) > 0 ? ", " : "", v, v);
	}
}

/*
 * Applies the difference computed by diff (agg_diff_query) in a single
 * statement that streams it: for differences too large to hold in memory.
 * Returns the number of rows changed.  Caller is connected to SPI, as the
 * table's owner.
 */
static int64
agg_apply_streaming(AggDef *def, const char *name, const char *diff,
					AggKeys *keys, const char *nulls)
{
	StringInfoData sql;
	bool		isnull;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH diff AS MATERIALIZED (SELECT * FROM (%s) d), "
					 "del AS (DELETE FROM %s a USING diff d "
					 "WHERE d.__pulse_f IS NULL AND a.ctid = d.__pulse_ctid RETURNING 1), "
					 "ups AS (",
					 diff, name);
	agg_append_insert(&sql, def, name);
	appendStringInfo(&sql, "SELECT %s%s%s FROM diff d WHERE d.__pulse_f",
					 agg_column_list(def->keys, "d."),
					 def->values ? ", " : "",
					 agg_column_list(def->values, "d."));
	agg_append_on_conflict(&sql, def);
	appendStringInfoString(&sql,
						   " RETURNING 1) "
						   "SELECT (SELECT count(*) FROM del) + (SELECT count(*) FROM ups)");
	agg_exec(sql.data, keys ? keys->nkeys : 0,
			 keys ? keys->array_types : NULL,
			 keys ? keys->arrays : NULL, nulls);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Column c (0-based, after __pulse_ctid and __pulse_f) of the rows of tt
 * whose __pulse_f is (upserts) or is not (deletes, c = -1: the ctids) true,
 * and whose column skipcol (1-based; 0: none) is not true, as an array of
 * elemtype.
 */
static Datum
agg_diff_column(SPITupleTable *tt, uint64 ntuples, int c, bool upserts,
				int skipcol, Oid elemtype, int *nitems)
{
	Datum	   *elems = palloc(sizeof(Datum) * (ntuples + 1));
	bool	   *enulls = palloc(sizeof(bool) * (ntuples + 1));
	int			n = 0;
	int			dims[1];
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	for (uint64 i = 0; i < ntuples; i++)
	{
		bool		isnull;

		(void) SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull);
		if (isnull == upserts)
			continue;
		if (skipcol > 0)
		{
			Datum		skip = SPI_getbinval(tt->vals[i], tt->tupdesc, skipcol,
											 &isnull);

			if (!isnull && DatumGetBool(skip))
				continue;
		}
		elems[n] = SPI_getbinval(tt->vals[i], tt->tupdesc, c < 0 ? 1 : 3 + c,
								 &enulls[n]);
		n++;
	}
	*nitems = n;
	dims[0] = n;
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, enulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

/*
 * Applies the difference held in tt (ntuples rows in the format of
 * agg_diff_query, coltypes the types of its keys and values, rows whose
 * column skipcol is true left out) with one DELETE by ctid and one
 * INSERT ... ON CONFLICT fed from arrays.  Returns the number of rows
 * changed.  Caller is connected to SPI, as the table's owner.
 */
static int64
agg_apply_rows(AggDef *def, const char *name, SPITupleTable *tt,
			   uint64 ntuples, Oid *coltypes, int skipcol)
{
	int			ncols = list_length(def->keys) + list_length(def->values);
	Oid		   *argtypes = palloc(sizeof(Oid) * (ncols + 1));
	Datum	   *args = palloc(sizeof(Datum) * (ncols + 1));
	int			n;
	int64		rows = 0;
	StringInfoData sql;

	args[0] = agg_diff_column(tt, ntuples, -1, false, skipcol, TIDOID, &n);
	if (n > 0)
	{
		argtypes[0] = get_array_type(TIDOID);
		rows += agg_exec(psprintf("DELETE FROM %s WHERE ctid = ANY($1)", name),
						 1, argtypes, args, NULL);
	}
	for (int c = 0; c < ncols; c++)
	{
		args[c] = agg_diff_column(tt, ntuples, c, true, skipcol, coltypes[c], &n);
		argtypes[c] = get_array_type(coltypes[c]);
	}
	if (n > 0)
	{
		initStringInfo(&sql);
		agg_append_insert(&sql, def, name);
		appendStringInfoString(&sql, "SELECT * FROM unnest(");
		for (int c = 0; c < ncols; c++)
			appendStringInfo(&sql, "%s$%d", c > 0 ? ", " : "", c + 1);
		appendStringInfoChar(&sql, ')');
		agg_append_on_conflict(&sql, def);
		rows += agg_exec(sql.data, ncols, argtypes, args, NULL);
	}
	return rows;
}

/*
 * Recomputes the groups of keys (all groups when keys is NULL) and applies
 * the difference to the aggregate table; returns the number of rows
 * deleted, inserted or updated.  Runs the query as the table's owner with
 * the creation-time search_path.  Caller is connected to SPI.
 *
 * The difference is computed by one SELECT (agg_diff_query), which the
 * planner may parallelize (a data-modifying statement never runs in
 * parallel); when it has at most AGG_MAX_DIFF_ROWS rows, one DELETE by ctid
 * and one INSERT ... ON CONFLICT fed from arrays apply it.  Otherwise, or
 * when a column's type has no array type, a single statement recomputes and
 * applies it without holding it in memory (the first result is dropped).  Nothing but refreshes writes
 * the table, and one refresh runs at a time, so the ctids read by the first
 * statement still designate the rows the second deletes.
 */
static int64
agg_apply(AggDef *def, const char *name, AggKeys *keys)
{
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Relation	rel;
	TupleDesc	reldesc;
	char	   *diff;
	int			ncols = list_length(def->keys) + list_length(def->values);
	Oid		   *coltypes = palloc(sizeof(Oid) * (ncols + 1));
	bool		in_memory = true;
	char	   *nulls = NULL;
	int64		rows;

	owner = agg_owner(def);

	/* The value columns' types tell how to compare old and new values. */
	rel = relation_open(def->relid, AccessShareLock);
	reldesc = RelationGetDescr(rel);
	diff = agg_diff_query(def, name, keys, reldesc);
	relation_close(rel, AccessShareLock);

	if (keys != NULL)
	{
		nulls = palloc(keys->nkeys + 1);
		for (int i = 0; i < keys->nkeys; i++)
			nulls[i] = keys->array_null[i] ? 'n' : ' ';
		nulls[keys->nkeys] = '\0';
	}

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", def->search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	agg_set_work_mem();

	if (in_memory)
	{
		/* a LIMIT, not an SPI row count, which would forbid parallelism */
		if (agg_exec(psprintf("%s LIMIT %d", diff, AGG_MAX_DIFF_ROWS + 1),
					 keys ? keys->nkeys : 0, keys ? keys->array_types : NULL,
					 keys ? keys->arrays : NULL, nulls) > AGG_MAX_DIFF_ROWS)
		{
			SPI_freetuptable(SPI_tuptable);
			in_memory = false;
		}
	}

	/* the arrays are of the types of the query's columns, cast on insert */
	if (in_memory)
	{
		for (int c = 0; c < ncols; c++)
		{
			coltypes[c] = SPI_gettypeid(SPI_tuptable->tupdesc, 3 + c);
			if (!OidIsValid(get_array_type(coltypes[c])))
				in_memory = false;
		}
		if (!in_memory)
			SPI_freetuptable(SPI_tuptable);
	}

	if (in_memory)
	{
		SPITupleTable *tt = SPI_tuptable;

		rows = agg_apply_rows(def, name, tt, SPI_processed, coltypes, 0);
		SPI_freetuptable(tt);
	}
	else
		rows = agg_apply_streaming(def, name, diff, keys, nulls);

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return rows;
}

/*
 * Bumps the cache tag of the aggregate (its schema-qualified name) through
 * pulse.bump_tag, which NOTIFYs the proxies at commit.
 */
static void
agg_bump_tag(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	agg_exec("SELECT pulse.bump_tag($1)", 1, argtypes, values, NULL);
}

/*
 * Records a run in pulse.aggregate_runs and in the aggregate's definition:
 * a success (error == NULL) or a failure.  Caller is connected to SPI.
 */
static void
agg_record_run(AggRun *run, const char *error)
{
	Oid			argtypes[6] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, INT8OID, TEXTOID};
	Datum		values[6];
	char		nulls[7] = "      ";

	values[0] = Int32GetDatum(run->id);
	values[1] = TimestampTzGetDatum(run->started);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[3] = CStringGetTextDatum(run->full ? "full" : "incremental");
	values[4] = Int64GetDatum(run->rows);
	if (error != NULL)
	{
		nulls[4] = 'n';
		values[5] = CStringGetTextDatum(error);
	}
	else
		nulls[5] = 'n';

	agg_exec("INSERT INTO pulse.aggregate_runs "
			 "(aggregate_id, aggregate, started, duration, mode, rows_changed, error) "
			 "SELECT d.id, d.relid::regclass::text, $2, $3 - $2, $4, $5, $6 "
			 "FROM pulse.aggregate_defs d WHERE d.id = $1",
			 6, argtypes, values, nulls);
	if (error == NULL)
		agg_exec("UPDATE pulse.aggregate_defs SET last_attempt = $2, "
				 "last_refresh = $2, last_duration = $3 - $2, last_rows = $5, "
				 "last_error = NULL WHERE id = $1",
				 6, argtypes, values, nulls);
	else
		agg_exec("UPDATE pulse.aggregate_defs SET last_attempt = $2, "
				 "last_error = $6 WHERE id = $1",
				 6, argtypes, values, nulls);
	agg_exec("DELETE FROM pulse.aggregate_runs WHERE aggregate_id = $1 AND id <= "
			 "(SELECT r.id FROM pulse.aggregate_runs r WHERE r.aggregate_id = $1 "
			 "ORDER BY r.id DESC OFFSET " CppAsString2(AGG_RUNS_KEPT) " LIMIT 1)",
			 1, argtypes, values, NULL);
}

/* The owner of aggregate def's table (an error if the table is gone). */
static Oid
agg_owner(AggDef *def)
{
	HeapTuple	classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(def->relid));
	Oid			owner;

	if (!HeapTupleIsValid(classtup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of aggregate %d no longer exists", def->id)));
	owner = ((Form_pg_class) GETSTRUCT(classtup))->relowner;
	ReleaseSysCache(classtup);
	return owner;
}

/*
 * The delta maintenance of incremental aggregate def for this refresh, or
 * NULL when its touched groups are to be recomputed: its log was created
 * without deltas, or the query no longer qualifies (a NOT NULL constraint
 * it relied on was dropped).  Analyses the query again as the table's owner
 * with its search_path; the analysis locks the source table until the end
 * of the transaction, so its constraints cannot change under the refresh.
 */
static AggDelta *
agg_delta_load(AggDef *def)
{
	Oid			logrel = get_relname_relid(psprintf("aggregate_%d_log", def->id),
										   get_namespace_oid("pulse", false));
	Oid			owner = agg_owner(def);
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	List	   *raw;
	Query	   *q;
	AggShape	shape;
	AggDelta   *delta = NULL;
	const char *why;

	if (!OidIsValid(logrel) ||
		get_attnum(logrel, "__pulse_n") == InvalidAttrNumber)
		return NULL;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", def->search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	raw = raw_parser(def->query, RAW_PARSE_DEFAULT);
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), def->query,
								  NULL, 0, NULL);
	memset(&shape, 0, sizeof(shape));
	if (agg_incremental_blocker(q, &shape) == NULL)
		delta = agg_delta_plan(q, shape.source, &why);
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	if (delta != NULL && delta->nvalues != list_length(def->values))
		elog(ERROR, "aggregate %d: its query has %d values, its table %d",
			 def->id, delta->nvalues, list_length(def->values));
	return delta;
}

/*
 * Consumes the change log of a delta-maintained aggregate and sums its
 * deltas per group: *tt gets one row per touched group, columns its keys,
 * the change of count(*), then the delta columns of the log (in the order
 * of the values) and last whether a full refresh was logged.  Returns false
 * when the refresh must be full instead (TRUNCATE, or more than
 * AGG_MAX_INCREMENTAL_KEYS groups).  Caller is connected to SPI, in the
 * refresh's transaction and snapshot.
 */
static bool
agg_consume_delta(AggDef *def, AggDelta *delta, SPITupleTable **tt,
				  uint64 *ntuples)
{
	StringInfoData sql;
	char	   *keys = agg_column_list(def->keys, "c.");
	bool		isnull;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH c AS (DELETE FROM %s RETURNING *) "
					 "SELECT %s, sum(c.__pulse_n)",
					 agg_pulse_object(def->id, "log"), keys);
	for (int i = 0; i < delta->nvalues; i++)
	{
		switch (delta->v[i].kind)
		{
			case AGG_DK_COUNT_STAR:
			case AGG_DK_AVG:
				break;
			case AGG_DK_COUNT:
			case AGG_DK_SUM:
				appendStringInfo(&sql, ", sum(c.__pulse_d_%d)", i + 1);
				break;
			case AGG_DK_MIN:
				appendStringInfo(&sql, ", min(c.__pulse_d_%d), min(c.__pulse_e_%d)",
								 i + 1, i + 1);
				break;
			case AGG_DK_MAX:
				appendStringInfo(&sql, ", max(c.__pulse_d_%d), max(c.__pulse_e_%d)",
								 i + 1, i + 1);
				break;
		}
	}
	appendStringInfo(&sql, ", bool_or(bool_or(c.__pulse_full)) OVER () "
					 "FROM c GROUP BY %s LIMIT %d",
					 keys, AGG_MAX_INCREMENTAL_KEYS + 1);
	*ntuples = agg_exec0(sql.data);
	*tt = SPI_tuptable;
	if (*ntuples == 0)
		return true;
	if (*ntuples > AGG_MAX_INCREMENTAL_KEYS)
		return false;
	return !DatumGetBool(SPI_getbinval((*tt)->vals[0], (*tt)->tupdesc,
									   (*tt)->tupdesc->natts, &isnull));
}

/* Column c (1-based) of the rows of tt as an array; *typid its type. */
static Datum
agg_tt_column(SPITupleTable *tt, uint64 ntuples, int c, Oid *typid)
{
	Datum	   *elems = palloc(sizeof(Datum) * (ntuples + 1));
	bool	   *enulls = palloc(sizeof(bool) * (ntuples + 1));
	int			dims[1] = {(int) ntuples};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	*typid = SPI_gettypeid(tt->tupdesc, c);
	for (uint64 i = 0; i < ntuples; i++)
		elems[i] = SPI_getbinval(tt->vals[i], tt->tupdesc, c, &enulls[i]);
	get_typlenbyvalalign(*typid, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, enulls, 1, dims, lbs,
											  *typid, typlen, typbyval,
											  typalign));
}

/*
 * The SELECT list of agg_delta_query: __pulse_ctid, __pulse_f, keys, the
 * new values, and __pulse_r, true for a group to recompute from the source.
 * In it d is the group's deltas and a its row in the table (NULLs for a new
 * group); reldesc is the table's.
 */
static char *
agg_delta_select(AggDef *def, AggDelta *delta, TupleDesc reldesc)
{
	StringInfoData sql;
	StringInfoData recompute;
	char	  **cnt = palloc0(sizeof(char *) * (delta->nvalues + 1));
	char	  **sum = palloc0(sizeof(char *) * (delta->nvalues + 1));
	char	   *n;

	n = psprintf("(coalesce(a.%s, 0) + d.__pulse_n)",
				 quote_identifier((char *) list_nth(def->values, delta->count_star)));
	for (int i = 0; i < delta->nvalues; i++)
	{
		const char *col = quote_identifier((char *) list_nth(def->values, i));

		if (delta->v[i].kind == AGG_DK_COUNT_STAR)
			cnt[i] = n;
		else if (delta->v[i].kind == AGG_DK_COUNT)
			cnt[i] = psprintf("(coalesce(a.%s, 0) + coalesce(d.__pulse_d_%d, 0))",
							  col, i + 1);
		else if (delta->v[i].kind == AGG_DK_SUM)
			sum[i] = psprintf("(coalesce(a.%s, 0) + coalesce(d.__pulse_d_%d, 0))",
							  col, i + 1);
	}

	initStringInfo(&sql);
	initStringInfo(&recompute);
	appendStringInfo(&sql, "SELECT a.__pulse_ctid, CASE WHEN %s > 0 THEN true END, %s",
					 n, agg_column_list(def->keys, "d."));
	for (int i = 0; i < delta->nvalues; i++)
	{
		AggDeltaValue *v = &delta->v[i];
		const char *col = quote_identifier((char *) list_nth(def->values, i));
		int			attno = SPI_fnumber(reldesc, (char *) list_nth(def->values, i));
		char	   *type;
		char	   *expr = NULL;

		if (attno <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of aggregate %d no longer exists",
							(char *) list_nth(def->values, i), def->id)));
		type = format_type_be_qualified(TupleDescAttr(reldesc, attno - 1)->atttypid);
		switch (v->kind)
		{
			case AGG_DK_COUNT_STAR:
			case AGG_DK_COUNT:
				expr = cnt[i];
				break;
			case AGG_DK_SUM:
				expr = psprintf("CASE WHEN %s > 0 THEN %s END",
								cnt[v->count_of], sum[i]);
				break;
			case AGG_DK_AVG:
				expr = psprintf("CASE WHEN %s > 0 THEN %s::pg_catalog.numeric / %s::pg_catalog.numeric END",
								cnt[v->count_of], sum[v->sum_of],
								cnt[v->count_of]);
				break;
			case AGG_DK_MIN:
			case AGG_DK_MAX:
				{
					TypeCacheEntry *tc = lookup_type_cache(v->argtype,
														   TYPECACHE_LT_OPR | TYPECACHE_GT_OPR);
					bool		ismin = v->kind == AGG_DK_MIN;

					expr = psprintf("%s(a.%s, d.__pulse_d_%d)",
									ismin ? "least" : "greatest", col, i + 1);
					/* a removed value at or beyond the new extreme */
					appendStringInfo(&recompute,
									 " OR (d.__pulse_e_%d IS NOT NULL AND NOT coalesce(%s %s d.__pulse_e_%d, false))",
									 i + 1, expr,
									 agg_operator(ismin ? tc->lt_opr : tc->gt_opr),
									 i + 1);
				}
				break;
		}
		appendStringInfo(&sql, ", (%s)::%s", expr, type);
	}
	appendStringInfo(&sql, ", (%s < 0 OR (%s > 0 AND (false%s))) AS __pulse_r",
					 n, n, recompute.data);
	return sql.data;
}

/*
 * Applies the summed deltas tt (ntuples rows, from agg_consume_delta) to
 * the table of def; recomputes from the source the groups whose min or max
 * lost its extreme value.  Returns the number of rows changed.  Caller is
 * connected to SPI, in the refresh's transaction and snapshot.
 *
 * One SELECT joins the deltas to the table's rows on the keys (with "=",
 * one probe of the unique index per group, a LATERAL subquery that OFFSET 0
 * keeps from becoming a hash join over the whole table; groups with a NULL
 * key with record equality, which matches NULLs as the index does) and
 * computes the new rows; then
 * agg_apply_rows writes them (a group whose count(*) falls to 0 is deleted)
 * and agg_apply recomputes the flagged groups.
 */
static int64
agg_apply_delta(AggDef *def, const char *name, AggDelta *delta,
				SPITupleTable *tt, uint64 ntuples)
{
	int			nkeys = list_length(def->keys);
	int			ncols = nkeys + list_length(def->values);
	int			nin = tt->tupdesc->natts - 1;	/* without the full flag */
	Oid		   *argtypes = palloc(sizeof(Oid) * (nin + 1));
	Datum	   *args = palloc(sizeof(Datum) * (nin + 1));
	Oid		   *coltypes = palloc(sizeof(Oid) * (ncols + 1));
	StringInfoData sql;
	StringInfoData notnull;
	StringInfoData eq;
	StringInfoData cols;
	bool		null_keys = false;
	bool		hashable = true;
	char	   *sel;
	char	   *from_a;
	char	   *receq;
	Relation	rel;
	Oid			owner = agg_owner(def);
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	SPITupleTable *rt;
	uint64		nrows;
	uint64		nflagged = 0;
	int64		rows;
	AggKeys		keys;

	initStringInfo(&cols);
	for (int c = 1; c <= nin; c++)
	{
		Oid			typid;

		args[c - 1] = agg_tt_column(tt, ntuples, c, &typid);
		argtypes[c - 1] = get_array_type(typid);
	}
	/* name the columns as the log's */
	appendStringInfoString(&cols, agg_column_list(def->keys, ""));
	appendStringInfoString(&cols, ", __pulse_n");
	for (int i = 0; i < delta->nvalues; i++)
	{
		if (delta->v[i].kind == AGG_DK_COUNT || delta->v[i].kind == AGG_DK_SUM)
			appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
		else if (delta->v[i].kind == AGG_DK_MIN || delta->v[i].kind == AGG_DK_MAX)
			appendStringInfo(&cols, ", __pulse_d_%d, __pulse_e_%d", i + 1, i + 1);
	}
	for (uint64 r = 0; r < ntuples && !null_keys; r++)
		for (int k = 1; k <= nkeys; k++)
		{
			bool		isnull;

			(void) SPI_getbinval(tt->vals[r], tt->tupdesc, k, &isnull);
			if (isnull)
				null_keys = true;
		}

	rel = relation_open(def->relid, AccessShareLock);
	sel = agg_delta_select(def, delta, RelationGetDescr(rel));
	initStringInfo(&notnull);
	initStringInfo(&eq);
	for (int k = 0; k < nkeys; k++)
	{
		const char *key = quote_identifier((char *) list_nth(def->keys, k));
		int			attno = SPI_fnumber(RelationGetDescr(rel), (char *) list_nth(def->keys, k));
		Oid			typid = attno > 0 ? TupleDescAttr(RelationGetDescr(rel), attno - 1)->atttypid : InvalidOid;
		Oid			eqop = OidIsValid(typid) ?
			lookup_type_cache(typid, TYPECACHE_EQ_OPR)->eq_opr : InvalidOid;

		appendStringInfo(&notnull, "%s%s IS NOT NULL", k > 0 ? " AND " : "", key);
		if (!OidIsValid(eqop) || !op_hashjoinable(eqop, typid))
			hashable = false;
		else
			appendStringInfo(&eq, "%sd.%s %s a.%s", k > 0 ? " AND " : "", key,
							 agg_operator(eqop), key);
	}
	relation_close(rel, AccessShareLock);
	receq = psprintf("ROW(%s)::record = ROW(%s)::record",
					 agg_column_list(def->keys, "d."),
					 agg_column_list(def->keys, "a."));
	from_a = psprintf("(SELECT a.ctid AS __pulse_ctid, a.* FROM %s a", name);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "WITH d AS MATERIALIZED (SELECT * FROM unnest(");
	for (int c = 1; c <= nin; c++)
		appendStringInfo(&sql, "%s$%d", c > 1 ? ", " : "", c);
	appendStringInfo(&sql, ") AS d(%s)) ", cols.data);
	if (!hashable)
		appendStringInfo(&sql, "%s FROM d LEFT JOIN %s) a ON %s", sel, from_a, receq);
	else
	{
		/* one probe of the unique index per group, not a scan of the table */
		appendStringInfo(&sql, "%s FROM (SELECT * FROM d WHERE %s) d "
						 "LEFT JOIN LATERAL %s WHERE %s OFFSET 0) a ON true",
						 sel, notnull.data, from_a, eq.data);
		if (null_keys)
			appendStringInfo(&sql, " UNION ALL %s FROM (SELECT * FROM d WHERE NOT (%s)) d "
							 "LEFT JOIN %s WHERE NOT (%s)) a ON %s",
							 sel, notnull.data, from_a, notnull.data, receq);
	}

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", def->search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	agg_set_work_mem();

	nrows = agg_exec(sql.data, nin, argtypes, args, NULL);
	rt = SPI_tuptable;
	for (int c = 0; c < ncols; c++)
		coltypes[c] = SPI_gettypeid(rt->tupdesc, 3 + c);
	rows = agg_apply_rows(def, name, rt, nrows, coltypes, 3 + ncols);

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	/* the groups to recompute: their keys, as agg_consume_keys gives them */
	memset(&keys, 0, sizeof(keys));
	keys.nkeys = nkeys;
	keys.arrays = palloc0(sizeof(Datum) * nkeys);
	keys.array_null = palloc0(sizeof(bool) * nkeys);
	keys.has_null = palloc0(sizeof(bool) * nkeys);
	keys.array_types = palloc0(sizeof(Oid) * nkeys);
	for (int k = 0; k < nkeys; k++)
	{
		Oid			typid = SPI_gettypeid(rt->tupdesc, 3 + k);
		Datum	   *elems = palloc(sizeof(Datum) * (nrows + 1));
		int			n = 0;
		int16		typlen;
		bool		typbyval;
		char		typalign;

		for (uint64 r = 0; r < nrows; r++)
		{
			bool		isnull;
			Datum		flag = SPI_getbinval(rt->vals[r], rt->tupdesc, 3 + ncols, &isnull);
			Datum		key;

			if (isnull || !DatumGetBool(flag))
				continue;
			if (k == 0)
				nflagged++;
			key = SPI_getbinval(rt->vals[r], rt->tupdesc, 3 + k, &isnull);
			if (isnull)
				keys.has_null[k] = true;
			else
				elems[n++] = key;
		}
		get_typlenbyvalalign(typid, &typlen, &typbyval, &typalign);
		keys.array_types[k] = get_array_type(typid);
		keys.array_null[k] = (n == 0);
		if (n > 0)
			keys.arrays[k] = PointerGetDatum(construct_array(elems, n, typid, typlen,
															 typbyval, typalign));
	}
	keys.nlogged = nflagged;
	if (nflagged > 0)
		rows += agg_apply(def, name, &keys);
	return rows;
}

/*
 * Refreshes aggregate run->id: consumes its log, recomputes, bumps its tag
 * and records the run, all in the caller's (sub)transaction, which the
 * caller aborts on error.  Caller is connected to SPI.  Returns false when
 * the aggregate is gone, or is being refreshed by someone else and
 * lock == AGG_LOCK_SKIP.
 */
static bool
agg_refresh(AggRun *run, bool force_full, AggLock lock)
{
	AggDef	   *def;
	char	   *name;
	AggKeys		keys;
	AggDelta   *delta = NULL;
	SPITupleTable *tt = NULL;
	uint64		ntuples = 0;
	Snapshot	snap;

	def = agg_load(run->id, lock);
	if (def == NULL)
		return false;
	name = agg_rel_name(def->relid);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of aggregate %d no longer exists", def->id)));

	run->full = force_full || !def->incremental;
	if (!run->full)
		delta = agg_delta_load(def);

	/* after the lock (and the analysis' locks): see agg_snapshot */
	snap = RegisterSnapshot(GetTransactionSnapshot());
	agg_snapshot = snap;
	PG_TRY();
	{
		if (run->full)
			agg_consume_all(def);
		else if (delta != NULL)
		{
			if (!agg_consume_delta(def, delta, &tt, &ntuples))
				run->full = true;
		}
		else if (!agg_consume_keys(def, &keys))
			run->full = true;

		if (run->full)
			run->rows = agg_apply(def, name, NULL);
		else if (delta != NULL)
			run->rows = ntuples > 0 ?
				agg_apply_delta(def, name, delta, tt, ntuples) : 0;
		else if (keys.nlogged > 0)
			run->rows = agg_apply(def, name, &keys);
		else
			run->rows = 0;
	}
	PG_FINALLY();
	{
		agg_snapshot = NULL;
	}
	PG_END_TRY();
	UnregisterSnapshot(snap);

	agg_bump_tag(name);
	agg_record_run(run, NULL);
	return true;
}

/* ----------------------------------------------------------------
 *		The worker's entry point
 * ----------------------------------------------------------------
 */

/*
 * The ids of the aggregates due for a refresh: not scheduled with pg_cron,
 * last attempted at least their interval ago, and with pending changes (or
 * untracked).  Runs its own transaction; never throws.
 */
static List *
agg_list_due(int max_refreshes)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *due = NIL;

	PG_TRY();
	{
		uint64		n;
		int32	   *ids;
		bool	   *tracked;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		n = agg_exec0("SELECT id, mode = 'incremental' OR tracked "
					  "FROM pulse.aggregate_defs "
					  "WHERE schedule IS NULL AND (last_attempt IS NULL "
					  "OR last_attempt + refresh_interval <= now()) "
					  "ORDER BY last_attempt NULLS FIRST, id");
		ids = palloc(sizeof(int32) * (n + 1));
		tracked = palloc(sizeof(bool) * (n + 1));
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
												 SPI_tuptable->tupdesc, 1, &isnull));
			tracked[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 2, &isnull));
		}
		for (uint64 i = 0; i < n && list_length(due) < max_refreshes; i++)
		{
			MemoryContext oldcxt;

			if (tracked[i] &&
				agg_exec0(psprintf("SELECT FROM %s LIMIT 1",
								   agg_pulse_object(ids[i], "log"))) == 0)
				continue;
			oldcxt = MemoryContextSwitchTo(cxt);
			due = lappend_int(due, ids[i]);
			MemoryContextSwitchTo(oldcxt);
		}

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = pulse_catch_and_abort(cxt);
		ereport(LOG,
				(errmsg("pulse worker could not list the aggregates due for a refresh: %s",
						edata->message)));
		FreeErrorData(edata);
		due = NIL;
	}
	PG_END_TRY();

	/* commit and abort leave us in TopMemoryContext */
	MemoryContextSwitchTo(cxt);
	return due;
}

/*
 * Records a failed refresh in a transaction of its own.  Never throws.
 */
static void
agg_record_failure_in_new_xact(AggRun *run, const char *message)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		agg_record_run(run, message);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = pulse_catch_and_abort(cxt);
		ereport(LOG,
				(errmsg("pulse worker could not record the failed refresh of aggregate %d: %s",
						run->id, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}

/*
 * One unit of work of the worker: refreshes aggregate id in a transaction of
 * its own.  A failure is logged and recorded, never thrown.
 */
static void
agg_refresh_unit(int32 id)
{
	MemoryContext cxt = CurrentMemoryContext;
	AggRun		run;

	memset(&run, 0, sizeof(run));
	run.id = id;
	run.started = GetCurrentTimestamp();

	PG_TRY();
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		pgstat_report_activity(STATE_RUNNING,
							   psprintf("pulse: refresh aggregate %d", id));
		(void) agg_refresh(&run, false, AGG_LOCK_SKIP);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		edata = pulse_catch_and_abort(cxt);
		ereport(LOG,
				(errmsg("pulse worker: refresh of aggregate %d failed: %s",
						id, edata->message)));
		agg_record_failure_in_new_xact(&run, edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * pulse_aggregates_refresh_due
 *		Refreshes up to max_refreshes due aggregates of the current database,
 *		each in its own transaction.  Called by the worker outside any
 *		transaction; never throws (errors are logged and recorded).  Returns
 *		the number of refreshes attempted.
 */
int
pulse_aggregates_refresh_due(int max_refreshes)
{
	List	   *due = agg_list_due(max_refreshes);
	ListCell   *lc;

	foreach(lc, due)
	{
		CHECK_FOR_INTERRUPTS();
		agg_refresh_unit(lfirst_int(lc));
	}
	return list_length(due);
}

/* ----------------------------------------------------------------
 *		SQL-callable functions
 * ----------------------------------------------------------------
 */

/*
 * Creates the log table, the capture function and the triggers of aggregate
 * id.  Caller is connected to SPI.
 */
static void
agg_create_capture(int32 id, AggShape *shape)
{
	char	   *log = agg_pulse_object(id, "log");
	char	   *capture = agg_pulse_object(id, "capture");
	StringInfoData body;
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&body);
	initStringInfo(&sql);

	if (shape->delta != NULL)
	{
		AggDelta   *d = shape->delta;
		char	   *src = agg_rel_name(shape->source);
		char	   *keycols = agg_column_list(shape->keys, "");
		char	   *srccols = agg_column_list(shape->source_cols, "");
		StringInfoData cols;	/* log columns of inserted rows */
		StringInfoData ins;		/* their values */
		StringInfoData dcols;	/* log columns of deleted rows */
		StringInfoData del;		/* their values */
		StringInfoData ucols;	/* log columns of an UPDATE */
		StringInfoData uagg;	/* their values, per group of u */
		StringInfoData unew;	/* u's columns from the new rows */
		StringInfoData uold;	/* u's columns from the old rows */

		/* the log's key and min/max columns copy the source columns' types */
		initStringInfo(&cols);
		initStringInfo(&ins);
		initStringInfo(&dcols);
		initStringInfo(&del);
		initStringInfo(&ucols);
		initStringInfo(&uagg);
		initStringInfo(&unew);
		initStringInfo(&uold);
		appendStringInfo(&sql, "CREATE TABLE %s AS SELECT ", log);
		foreach(lc, shape->keys)
			appendStringInfo(&sql, "s.%s AS %s, ",
							 quote_identifier((char *) list_nth(shape->source_cols,
																foreach_current_index(lc))),
							 quote_identifier((char *) lfirst(lc)));
		appendStringInfoString(&sql, "0::bigint AS __pulse_n");
		for (int i = 0; i < d->nvalues; i++)
		{
			AggDeltaValue *v = &d->v[i];
			const char *x = v->arg ? quote_identifier(v->arg) : NULL;

			switch (v->kind)
			{
				case AGG_DK_COUNT_STAR:
				case AGG_DK_AVG:
					break;
				case AGG_DK_COUNT:
					appendStringInfo(&sql, ", 0::bigint AS __pulse_d_%d", i + 1);
					appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&ins, ", count(%s)", x);
					appendStringInfo(&dcols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&del, ", -count(%s)", x);
					appendStringInfo(&ucols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&uagg, ", sum(u.__pulse_d_%d)", i + 1);
					appendStringInfo(&unew, ", CASE WHEN %s IS NULL THEN 0 ELSE 1 END AS __pulse_d_%d", x, i + 1);
					appendStringInfo(&uold, ", CASE WHEN %s IS NULL THEN 0 ELSE -1 END", x);
					break;
				case AGG_DK_SUM:
					appendStringInfo(&sql, ", 0::numeric AS __pulse_d_%d", i + 1);
					appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&ins, ", sum(%s::numeric)", x);
					appendStringInfo(&dcols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&del, ", -sum(%s::numeric)", x);
					appendStringInfo(&ucols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&uagg, ", sum(u.__pulse_d_%d)", i + 1);
					appendStringInfo(&unew, ", %s::numeric AS __pulse_d_%d", x, i + 1);
					appendStringInfo(&uold, ", -(%s::numeric)", x);
					break;
				case AGG_DK_MIN:
				case AGG_DK_MAX:
					appendStringInfo(&sql, ", s.%s AS __pulse_d_%d, s.%s AS __pulse_e_%d",
									 x, i + 1, x, i + 1);
					appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&ins, ", %s(%s)",
									 v->kind == AGG_DK_MIN ? "min" : "max", x);
					appendStringInfo(&dcols, ", __pulse_e_%d", i + 1);
					appendStringInfo(&del, ", %s(%s)",
									 v->kind == AGG_DK_MIN ? "min" : "max", x);
					appendStringInfo(&ucols, ", __pulse_d_%d, __pulse_e_%d", i + 1, i + 1);
					appendStringInfo(&uagg, ", %s(u.__pulse_d_%d), %s(u.__pulse_e_%d)",
									 v->kind == AGG_DK_MIN ? "min" : "max", i + 1,
									 v->kind == AGG_DK_MIN ? "min" : "max", i + 1);
					/* CASE WHEN false THEN x END: a NULL of x's type */
					appendStringInfo(&unew, ", %s AS __pulse_d_%d, CASE WHEN false THEN %s END AS __pulse_e_%d",
									 x, i + 1, x, i + 1);
					appendStringInfo(&uold, ", CASE WHEN false THEN %s END, %s", x, x);
					break;
			}
		}
		appendStringInfo(&sql, " FROM %s s WITH NO DATA", src);
		agg_exec0(sql.data);
		agg_exec0(psprintf("ALTER TABLE %s "
						   "ADD COLUMN __pulse_full boolean NOT NULL DEFAULT false, "
						   "ADD COLUMN __pulse_at timestamptz NOT NULL DEFAULT now()",
						   log));

		/*
		 * One log row per group a statement touches, with its deltas; an
		 * UPDATE's old and new rows are summed up together (one statement,
		 * one row for a group whose key did not change).
		 */
		appendStringInfo(&body,
						 "BEGIN\n"
						 "  IF TG_OP = 'INSERT' THEN\n"
						 "    INSERT INTO %s (%s, __pulse_n%s) SELECT %s, count(*)%s FROM pulse_new GROUP BY %s;\n"
						 "  ELSIF TG_OP = 'UPDATE' THEN\n"
						 "    INSERT INTO %s (%s, __pulse_n%s) SELECT %s, sum(u.__pulse_n)%s FROM (\n"
						 "      SELECT %s, 1 AS __pulse_n%s FROM pulse_new\n"
						 "      UNION ALL SELECT %s, -1%s FROM pulse_old) u GROUP BY %s;\n"
						 "  ELSIF TG_OP = 'DELETE' THEN\n"
						 "    INSERT INTO %s (%s, __pulse_n%s) SELECT %s, -count(*)%s FROM pulse_old GROUP BY %s;\n"
						 "  ELSE\n"
						 "    INSERT INTO %s (__pulse_full) VALUES (true);\n"
						 "  END IF;\n"
						 "  RETURN NULL;\n"
						 "END",
						 log, keycols, cols.data, srccols, ins.data, srccols,
						 log, keycols, ucols.data, srccols, uagg.data,
						 srccols, unew.data, srccols, uold.data, srccols,
						 log, keycols, dcols.data, srccols, del.data, srccols,
						 log);
	}
	else if (shape->incremental)
	{
		char	   *src = agg_rel_name(shape->source);
		char	   *keycols = agg_column_list(shape->keys, "");
		char	   *srccols = agg_column_list(shape->source_cols, "");

		/* the log's key columns copy the source columns' types */
		appendStringInfo(&sql, "CREATE TABLE %s AS SELECT ", log);
		foreach(lc, shape->keys)
			appendStringInfo(&sql, "%ss.%s AS %s",
							 foreach_current_index(lc) > 0 ? ", " : "",
							 quote_identifier((char *) list_nth(shape->source_cols,
																foreach_current_index(lc))),
							 quote_identifier((char *) lfirst(lc)));
		appendStringInfo(&sql, " FROM %s s WITH NO DATA", src);
		agg_exec0(sql.data);
		agg_exec0(psprintf("ALTER TABLE %s "
						   "ADD COLUMN __pulse_full boolean NOT NULL DEFAULT false, "
						   "ADD COLUMN __pulse_at timestamptz NOT NULL DEFAULT now()",
						   log));

		appendStringInfo(&body,
						 "BEGIN\n"
						 "  IF TG_OP = 'INSERT' THEN\n"
						 "    INSERT INTO %s (%s) SELECT DISTINCT %s FROM pulse_new;\n"
						 "  ELSIF TG_OP = 'UPDATE' THEN\n"
						 "    INSERT INTO %s (%s) SELECT %s FROM pulse_old UNION SELECT %s FROM pulse_new;\n"
						 "  ELSIF TG_OP = 'DELETE' THEN\n"
						 "    INSERT INTO %s (%s) SELECT DISTINCT %s FROM pulse_old;\n"
						 "  ELSE\n"
						 "    INSERT INTO %s (__pulse_full) VALUES (true);\n"
						 "  END IF;\n"
						 "  RETURN NULL;\n"
						 "END",
						 log, keycols, srccols,
						 log, keycols, srccols, srccols,
						 log, keycols, srccols,
						 log);
	}
	else
	{
		agg_exec0(psprintf("CREATE TABLE %s ("
						   "__pulse_full boolean NOT NULL DEFAULT false, "
						   "__pulse_at timestamptz NOT NULL DEFAULT now())",
						   log));
		appendStringInfo(&body,
						 "BEGIN\n"
						 "  INSERT INTO %s (__pulse_full) VALUES (TG_OP = 'TRUNCATE');\n"
						 "  RETURN NULL;\n"
						 "END",
						 log);
	}

	agg_exec0(psprintf("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql "
					   "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %s",
					   capture, quote_literal_cstr(body.data)));

	/*
	 * DROP EXTENSION pulse takes the log, the capture function and the
	 * triggers with it (they are not members: pg_dump dumps them, with the
	 * DEPENDS ON EXTENSION of the function and the triggers).
	 */
	agg_exec0(psprintf("ALTER FUNCTION %s() DEPENDS ON EXTENSION pulse", capture));
	{
		ObjectAddress logaddr;
		ObjectAddress extaddr;

		ObjectAddressSet(logaddr, RelationRelationId,
						 get_relname_relid(psprintf("aggregate_%d_log", id),
										   get_namespace_oid("pulse", false)));
		ObjectAddressSet(extaddr, ExtensionRelationId,
						 get_extension_oid("pulse", false));
		recordDependencyOn(&logaddr, &extaddr, DEPENDENCY_AUTO_EXTENSION);
	}

	if (!shape->tracked)
		return;
	foreach(lc, shape->tracked_rels)
	{
		char	   *rel = agg_rel_name(lfirst_oid(lc));
		static const char *const events[][2] = {
			{"ins", "INSERT ON %s REFERENCING NEW TABLE AS pulse_new"},
			{"upd", "UPDATE ON %s REFERENCING OLD TABLE AS pulse_old NEW TABLE AS pulse_new"},
			{"del", "DELETE ON %s REFERENCING OLD TABLE AS pulse_old"},
			{"trunc", "TRUNCATE ON %s"},
		};

		if (shape->incremental)
		{
			for (int i = 0; i < lengthof(events); i++)
			{
				char	   *tgname = psprintf("pulse_aggregate_%d_%s", id, events[i][0]);

				agg_exec0(psprintf("CREATE TRIGGER %s AFTER %s "
								   "FOR EACH STATEMENT EXECUTE FUNCTION %s()",
								   tgname, psprintf(events[i][1], rel), capture));
				agg_exec0(psprintf("ALTER TRIGGER %s ON %s DEPENDS ON EXTENSION pulse",
								   tgname, rel));
			}
		}
		else
		{
			agg_exec0(psprintf("CREATE TRIGGER pulse_aggregate_%d "
							   "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s "
							   "FOR EACH STATEMENT EXECUTE FUNCTION %s()",
							   id, rel, capture));
			agg_exec0(psprintf("ALTER TRIGGER pulse_aggregate_%d ON %s DEPENDS ON EXTENSION pulse",
							   id, rel));
		}
	}
}

/*
 * pulse.create_aggregate(name text, query text,
 *						  refresh interval DEFAULT '10 seconds',
 *						  schedule text DEFAULT NULL) RETURNS text
 *
 * Creates and fills the aggregate table; returns its mode, 'incremental' or
 * 'full'.  Runs in the caller's transaction: an error undoes everything.
 */
Datum
pulse_create_aggregate(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *query;
	Interval   *refresh;
	char	   *schedule = NULL;
	RangeVar   *rv;
	Oid			nspid;
	Oid			relid;
	char	   *qname;
	AggShape	shape;
	int32		id;
	uint64		filled;
	AggRun		run;
	bool		isnull;
	int			nestlevel;
	Oid			argtypes[11];
	Datum		values[11];
	char		nulls[12];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, query and refresh of an aggregate must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	refresh = PG_GETARG_INTERVAL_P(2);
	if (!PG_ARGISNULL(3))
		schedule = text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (agg_interval_usecs(refresh) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refresh interval of an aggregate must be positive")));

	if (schedule != NULL && !OidIsValid(get_extension_oid("pg_cron", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a schedule needs the pg_cron extension in this database"),
				 errhint("Run CREATE EXTENSION pg_cron in the database named by cron.database_name, "
						 "or pass schedule => NULL to have the pulse workers refresh the aggregate every refresh interval.")));

	/* Where the table goes; it must not exist yet. */
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	nspid = RangeVarGetCreationNamespace(rv);
	if (isAnyTempNamespace(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("an aggregate cannot be a temporary table")));
	qname = quote_qualified_identifier(get_namespace_name(nspid), rv->relname);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	relid = get_relname_relid(rv->relname, nspid);
	if (OidIsValid(relid))
	{
		argtypes[0] = OIDOID;
		values[0] = ObjectIdGetDatum(relid);
		if (agg_exec("SELECT 1 FROM pulse.aggregate_defs WHERE relid = $1",
					 1, argtypes, values, NULL) == 1)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("aggregate \"%s\" already exists", qname)));
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", qname)));
	}

	agg_analyze(query, &shape);
	if (!shape.incremental)
		ereport(NOTICE,
				(errmsg("aggregate %s will be refreshed in full mode", qname),
				 errdetail("Incremental refresh is not possible because %s.",
						   shape.why_full)));

	agg_exec0("SELECT nextval('pulse.aggregate_defs_id_seq')::int4");
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));

	/* Triggers first: their lock keeps writers out until we commit. */
	agg_create_capture(id, &shape);

	run.id = id;
	run.full = true;
	run.started = GetCurrentTimestamp();
	nestlevel = NewGUCNestLevel();
	agg_set_work_mem();
	filled = agg_exec0(psprintf("CREATE TABLE %s AS %s\n", qname, shape.stmt));
	AtEOXact_GUC(false, nestlevel);
	agg_exec0(psprintf("CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT",
					   qname, agg_column_list(shape.keys, "")));
	run.rows = (int64) filled;
	relid = get_relname_relid(rv->relname, nspid);

	/*
	 * A transaction-wide snapshot may predate writes that committed before
	 * the triggers existed: have the worker recompute everything once.
	 */
	if (IsolationUsesXactSnapshot())
		agg_exec0(psprintf("INSERT INTO %s (__pulse_full) VALUES (true)",
						   agg_pulse_object(id, "log")));

	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(id);
	argtypes[1] = OIDOID;
	values[1] = ObjectIdGetDatum(relid);
	argtypes[2] = TEXTOID;
	values[2] = CStringGetTextDatum(shape.stmt);
	argtypes[3] = TEXTOID;
	values[3] = CStringGetTextDatum(GetConfigOption("search_path", false, false));
	argtypes[4] = TEXTOID;
	values[4] = CStringGetTextDatum(shape.incremental ? "incremental" : "full");
	argtypes[5] = BOOLOID;
	values[5] = BoolGetDatum(shape.tracked);
	argtypes[6] = TEXTARRAYOID;
	values[6] = agg_list_to_text_array(shape.keys);
	argtypes[7] = TEXTARRAYOID;
	values[7] = agg_list_to_text_array(shape.values);
	argtypes[8] = INTERVALOID;
	values[8] = IntervalPGetDatum(refresh);
	argtypes[9] = TEXTOID;
	values[9] = schedule ? CStringGetTextDatum(schedule) : (Datum) 0;
	argtypes[10] = TIMESTAMPTZOID;
	values[10] = TimestampTzGetDatum(run.started);
	memset(nulls, ' ', sizeof(nulls));
	nulls[9] = schedule ? ' ' : 'n';
	nulls[11] = '\0';
	agg_exec("INSERT INTO pulse.aggregate_defs (id, relid, query, search_path, mode, "
			 "tracked, key_columns, value_columns, refresh_interval, schedule, created_at) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
			 11, argtypes, values, nulls);

	if (schedule != NULL)
	{
		char	   *command = psprintf("SELECT pulse.refresh_aggregate(%s, true)",
									   quote_literal_cstr(qname));

		argtypes[0] = TEXTOID;
		values[0] = CStringGetTextDatum(psprintf("pulse_aggregate:%s", qname));
		argtypes[1] = TEXTOID;
		values[1] = CStringGetTextDatum(schedule);
		argtypes[2] = TEXTOID;
		values[2] = CStringGetTextDatum(command);
		/* name this database explicitly where pg_cron can (1.4 and later) */
		if (agg_cron_function_exists("cron.schedule_in_database(text,text,text,text,text,boolean)"))
			agg_exec("SELECT cron.schedule_in_database($1, $2, $3, current_database())",
					 3, argtypes, values, NULL);
		else
			agg_exec("SELECT cron.schedule($1, $2, $3)", 3, argtypes, values, NULL);
		argtypes[1] = INT8OID;
		values[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  1, &isnull);
		argtypes[0] = INT4OID;
		values[0] = Int32GetDatum(id);
		agg_exec("UPDATE pulse.aggregate_defs SET cron_jobid = $2 WHERE id = $1",
				 2, argtypes, values, NULL);
	}

	agg_bump_tag(qname);
	agg_record_run(&run, NULL);

	SPI_finish();

	/* Make sure a worker serves this database. */
	pulse_worker_wake(MyDatabaseId);

	PG_RETURN_TEXT_P(cstring_to_text(shape.incremental ? "incremental" : "full"));
}

/*
 * pulse.refresh_aggregate(name text, full boolean DEFAULT false) RETURNS bigint
 *
 * Refreshes the aggregate now (incrementally unless full or its mode says
 * otherwise) and returns the number of rows of its table that changed.  A
 * refresh that fails leaves the table as it was, is recorded in
 * pulse.aggregate_runs and in the aggregate's last_error, raises a WARNING
 * with the error's SQLSTATE and returns NULL.  Query cancel is not caught.
 */
Datum
pulse_refresh_aggregate(PG_FUNCTION_ARGS)
{
	text	   *name;
	bool		full;
	Oid			relid;
	AggRun		run;
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *failure = NULL;
	bool		found = true;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("aggregate name must not be null")));
	name = PG_GETARG_TEXT_PP(0);
	full = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);

	memset(&run, 0, sizeof(run));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	run.id = agg_resolve(name, &relid);
	SPI_finish();
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	run.started = GetCurrentTimestamp();

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		found = agg_refresh(&run, full, AGG_LOCK_WAIT);
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		failure = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (failure->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(failure);
	}
	PG_END_TRY();

	if (failure != NULL)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		agg_record_run(&run, failure->message);
		SPI_finish();
		ereport(WARNING,
				(errcode(failure->sqlerrcode),
				 errmsg("refresh of aggregate \"%s\" failed: %s",
						text_to_cstring(name), failure->message),
				 errhint("The aggregate keeps its previous contents; the error is in pulse.aggregate_runs.")));
		PG_RETURN_NULL();
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("aggregate \"%s\" does not exist", text_to_cstring(name))));
	PG_RETURN_INT64(run.rows);
}

/*
 * pulse.drop_aggregate(name text) RETURNS void
 *
 * Drops the aggregate table and everything pulse keeps for it (triggers on
 * the sources, log, pg_cron job, definition and runs).
 */
Datum
pulse_drop_aggregate(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int32		id;
	AggDef	   *def;
	char	   *qname;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("aggregate name must not be null")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	id = agg_resolve(PG_GETARG_TEXT_PP(0), &relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	def = agg_load(id, AGG_LOCK_WAIT);
	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("aggregate \"%s\" does not exist",
						text_to_cstring(PG_GETARG_TEXT_PP(0)))));
	qname = agg_rel_name(relid);
	agg_forget(def);
	agg_exec0(psprintf("DROP TABLE %s", qname));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * pulse._aggregate_forget(relid oid) RETURNS void
 *
 * Called by the sql_drop event trigger for every dropped table: when it was
 * an aggregate's, removes what pulse kept for it.
 */
Datum
pulse_aggregate_forget(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (agg_exec("SELECT id FROM pulse.aggregate_defs WHERE relid = $1",
				 1, argtypes, values, NULL) == 1)
	{
		bool		isnull;
		int32		id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc,
													 1, &isnull));
		AggDef	   *def = agg_load(id, AGG_LOCK_WAIT);

		if (def != NULL)
			agg_forget(def);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
