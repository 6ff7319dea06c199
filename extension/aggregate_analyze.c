/*-------------------------------------------------------------------------
 *
 * aggregate_analyze.c
 *		Query analysis of the materialized aggregates: is the query a usable
 *		SELECT ... GROUP BY, can it be refreshed incrementally (or what
 *		blocks it), can its values follow deltas, which tables feed it.
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
 * Delta maintenance (a kind of incremental refresh, same mode name; see
 * aggregate_delta.c) when moreover
 *	- the query has no WHERE and no HAVING clause;
 *	- no aggregate uses DISTINCT, FILTER or ORDER BY, and each one is
 *	  count(*) or takes a plain column of the source;
 *	- the select list has a count(*) (it tells when a group vanishes);
 *	- sum(x) sums smallint, integer, bigint or numeric, and avg(x) averages
 *	  smallint, integer or bigint: exact types.  A float sum depends on
 *	  the order of its terms (float addition is not associative), so deltas
 *	  would drift from the query: float sums and averages are recomputed
 *	  from their group's rows, which gives the query's value for the group
 *	  (up to the order in which the plan reads the rows, as the query
 *	  itself varies between plans);
 *	- the non-NULL x of every sum(x) and avg(x) are counted: count(x) is in
 *	  the select list, or x is NOT NULL (then count(*) counts them);
 *	- avg(x) comes with sum(x) in the select list;
 *	- min(x) and max(x) take a type that is not collatable.
 * Other incremental queries recompute their touched groups.
 *
 * Full mode (any other GROUP BY query): the refresh recomputes the whole
 * query and applies the difference.  A full-mode aggregate is "tracked"
 * when the rewritten query reads only plain or partitioned tables and calls
 * immutable functions only: triggers on every table it reads log one row
 * per writing statement, and the worker refreshes it only when such rows
 * are pending.  An untracked one (it calls now(), reads a foreign table, a
 * catalog, a materialized view...) is refreshed every interval.
 *
 * Locking: parse analysis takes AccessShareLock on every relation the query
 * reads, held until the end of the caller's transaction; so the NOT NULL
 * constraints agg_delta_plan relies on cannot change under a refresh that
 * analysed the query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/catalog.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "tcop/tcopprot.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "aggregate_int.h"

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
const char *
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
AggDelta *
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
			/* see agg_log_columns: non-finite values and scales */
			v->nonfinite = (v->argtype == NUMERICOID);
			v->track_scale = (v->argtype == NUMERICOID && var->vartypmod < 0);
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
void
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
