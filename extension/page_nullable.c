/*-------------------------------------------------------------------------
 *
 * page_nullable.c
 *		Proves that an output column of a query is never NULL, so that the
 *		seek predicate of a page may use row comparisons (page_sql.c).
 *
 * A sort key wrongly believed NOT NULL costs rows: the row-comparison
 * predicate is never true for a NULL key, so every row with a NULL key
 * after the cursor is silently skipped.  A key wrongly believed nullable
 * costs only speed.  So this file answers "proven never NULL" or "don't
 * know", and everything it does not understand is "don't know".
 *
 * The column is traced through the analysed and rewritten Query tree (views
 * are subqueries by then) down to where its values come from:
 *
 * - a table column declared NOT NULL (of a plain, partitioned or foreign
 *   table, but not of one with inheritance children, which may have dropped
 *   the constraint), unless the table is on the nullable side of an outer
 *   join on the way up.  A foreign table's NOT NULL is not enforced on the
 *   remote data, but the planner trusts it as well (it folds "k IS NULL"
 *   to false), as the documentation of CREATE FOREIGN TABLE says it may;
 * - the same column of a subquery, view or (non-recursive) CTE, proven
 *   there the same way; for UNION/INTERSECT/EXCEPT, in every branch;
 * - a join's merged (USING) column through the expression that defines it;
 * - a non-NULL constant, COALESCE with a proven argument, a binary-compatible
 *   cast of a proven value, count(), row_number(), rank(), dense_rank().
 *
 * PostgreSQL 15 keeps no "nulled by" marks on Vars (they came in 16), so the
 * outer joins are found here: every range table entry under the nullable
 * side of a LEFT/RIGHT/FULL join, at any depth of the join tree, is
 * nullable at that query level.  Grouping sets (ROLLUP, CUBE, GROUPING SETS)
 * null out grouping columns in the rows of the sets that lack them, so
 * under grouping sets no Var and no grouping expression is proven.  Values
 * from functions (set-returning ones included), VALUES lists, LATERAL outer
 * references, sublinks, window functions other than the ones above, and
 * every other expression are not proven.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "nodes/nodeFuncs.h"
#include "nodes/primnodes.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pulse.h"

/*
 * One query level on the way down from the top query: CTE names and outer
 * Vars (varlevelsup) resolve against the enclosing levels.
 */
typedef struct PnLevel
{
	Query	   *query;
	Bitmapset  *nullable;		/* rtindexes under an outer join's nullable side */
	bool		unknown_join;	/* the join tree has a node not understood */
	List	   *grouping;		/* grouping expressions nulled by grouping sets */
	struct PnLevel *parent;
} PnLevel;

static bool pn_expr_notnull(PnLevel *lvl, Node *expr);
static bool pn_query_column_notnull(PnLevel *parent, Query *q, AttrNumber attno);

/*
 * Adds to *out the rtindexes of jtnode's range table entries (joins
 * included) that an outer join may null out; nullable: jtnode itself is
 * under the nullable side of an enclosing join.  Sets *unknown on a node it
 * does not know.
 */
static void
pn_collect_nullable(Node *jtnode, bool nullable, Bitmapset **out, bool *unknown)
{
	if (jtnode == NULL)
		return;
	if (IsA(jtnode, RangeTblRef))
	{
		if (nullable)
			*out = bms_add_member(*out, ((RangeTblRef *) jtnode)->rtindex);
	}
	else if (IsA(jtnode, FromExpr))
	{
		ListCell   *lc;

		foreach(lc, ((FromExpr *) jtnode)->fromlist)
			pn_collect_nullable(lfirst(lc), nullable, out, unknown);
	}
	else if (IsA(jtnode, JoinExpr))
	{
		JoinExpr   *j = (JoinExpr *) jtnode;
		bool		left = nullable;
		bool		right = nullable;

		if (nullable && j->rtindex > 0)
			*out = bms_add_member(*out, j->rtindex);
		switch (j->jointype)
		{
			case JOIN_INNER:
				break;
			case JOIN_LEFT:
				right = true;
				break;
			case JOIN_RIGHT:
				left = true;
				break;
			default:			/* FULL, and anything unexpected */
				left = right = true;
				break;
		}
		pn_collect_nullable(j->larg, left, out, unknown);
		pn_collect_nullable(j->rarg, right, out, unknown);
	}
	else
		*unknown = true;		/* not understood: nothing is proven */
}

/* The expressions grouping sets may null out: every GROUP BY item. */
static List *
pn_grouping_exprs(Query *q)
{
	List	   *result = NIL;
	ListCell   *lc;

	if (q->groupingSets == NIL)
		return NIL;
	foreach(lc, q->groupClause)
	{
		SortGroupClause *gc = lfirst_node(SortGroupClause, lc);

		result = lappend(result, get_sortgroupclause_expr(gc, q->targetList));
	}
	return result;
}

static PnLevel *
pn_level(PnLevel *parent, Query *q)
{
	PnLevel    *lvl = palloc0(sizeof(PnLevel));

	lvl->query = q;
	lvl->parent = parent;
	pn_collect_nullable((Node *) q->jointree, false, &lvl->nullable,
						&lvl->unknown_join);
	lvl->grouping = pn_grouping_exprs(q);
	return lvl;
}

/*
 * Column attno of table relid, proven NOT NULL in every row a scan of the
 * table (with its children when inh) returns.
 */
static bool
pn_table_column_notnull(Oid relid, AttrNumber attno, bool inh)
{
	char		relkind = get_rel_relkind(relid);
	HeapTuple	tp;
	bool		notnull = false;

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		return false;			/* views are subqueries by now */

	/*
	 * A child of plain inheritance may drop an inherited NOT NULL in
	 * PostgreSQL 15 (a partition may not), so a scan that includes children
	 * proves nothing.
	 */
	if (inh && relkind == RELKIND_RELATION && has_subclass(relid))
		return false;

	if (attno < 0)
		return true;			/* system columns are never NULL */
	if (attno == 0)
		return false;			/* whole-row reference */
	tp = SearchSysCacheAttNum(relid, attno);
	if (HeapTupleIsValid(tp))
	{
		notnull = ((Form_pg_attribute) GETSTRUCT(tp))->attnotnull;
		ReleaseSysCache(tp);
	}
	return notnull;
}

/* The CTE rte refers to, and the level that owns it in *owner; or NULL. */
static CommonTableExpr *
pn_find_cte(PnLevel *lvl, RangeTblEntry *rte, PnLevel **owner)
{
	ListCell   *lc;

	for (Index up = 0; up < rte->ctelevelsup; up++)
	{
		lvl = lvl->parent;
		if (lvl == NULL)
			return NULL;
	}
	foreach(lc, lvl->query->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (strcmp(cte->ctename, rte->ctename) == 0)
		{
			*owner = lvl;
			return cte;
		}
	}
	return NULL;
}

/* A Var of level lvl (varlevelsup already resolved) is never NULL. */
static bool
pn_var_notnull(PnLevel *lvl, Var *var)
{
	Query	   *q = lvl->query;
	RangeTblEntry *rte;

	if (q->groupingSets != NIL)
		return false;			/* grouping sets null out grouping columns */
	if (var->varno < 1 || var->varno > list_length(q->rtable))
		return false;
	if (lvl->unknown_join || bms_is_member(var->varno, lvl->nullable))
		return false;			/* on the nullable side of an outer join */
	rte = rt_fetch(var->varno, q->rtable);

	switch (rte->rtekind)
	{
		case RTE_RELATION:
			return pn_table_column_notnull(rte->relid, var->varattno, rte->inh);
		case RTE_SUBQUERY:
			if (var->varattno <= 0)
				return false;
			return pn_query_column_notnull(lvl, rte->subquery, var->varattno);
		case RTE_CTE:
			{
				PnLevel    *owner = NULL;
				CommonTableExpr *cte = pn_find_cte(lvl, rte, &owner);

				if (cte == NULL || cte->cterecursive || var->varattno <= 0 ||
					!IsA(cte->ctequery, Query))
					return false;
				return pn_query_column_notnull(owner, (Query *) cte->ctequery,
											   var->varattno);
			}
		case RTE_JOIN:
			{
				Node	   *alias;

				if (var->varattno <= 0 ||
					var->varattno > list_length(rte->joinaliasvars))
					return false;
				alias = list_nth(rte->joinaliasvars, var->varattno - 1);
				return alias != NULL && pn_expr_notnull(lvl, alias);
			}
		default:
			/* functions, VALUES, table functions, tuplestores, ... */
			return false;
	}
}

/* The aggregate or window function fnoid never returns NULL. */
static bool
pn_function_never_null(Oid fnoid)
{
	switch (fnoid)
	{
		case F_COUNT_:
		case F_COUNT_ANY:
		case F_ROW_NUMBER:
		case F_RANK_:
		case F_DENSE_RANK_:
			return true;
		default:
			return false;
	}
}

/* expr, evaluated in the rows of lvl's query, is never NULL. */
static bool
pn_expr_notnull(PnLevel *lvl, Node *expr)
{
	ListCell   *lc;

	check_stack_depth();
	if (expr == NULL)
		return false;

	/* grouping sets replace a grouping expression by NULL as a whole */
	foreach(lc, lvl->grouping)
		if (equal(lfirst(lc), expr))
			return false;

	switch (nodeTag(expr))
	{
		case T_Var:
			{
				Var		   *var = (Var *) expr;

				for (Index up = 0; up < var->varlevelsup; up++)
				{
					lvl = lvl->parent;
					if (lvl == NULL)
						return false;
				}
				return pn_var_notnull(lvl, var);
			}
		case T_Const:
			return !((Const *) expr)->constisnull;
		case T_RelabelType:
			return pn_expr_notnull(lvl, (Node *) ((RelabelType *) expr)->arg);
		case T_CoalesceExpr:
			foreach(lc, ((CoalesceExpr *) expr)->args)
				if (pn_expr_notnull(lvl, lfirst(lc)))
					return true;
			return false;
		case T_Aggref:
			return pn_function_never_null(((Aggref *) expr)->aggfnoid);
		case T_WindowFunc:
			return pn_function_never_null(((WindowFunc *) expr)->winfnoid);
		default:
			return false;
	}
}

/*
 * Output column attno of q (a subquery, view or CTE body under parent, or
 * the top query when parent is NULL) is never NULL.
 */
static bool
pn_query_column_notnull(PnLevel *parent, Query *q, AttrNumber attno)
{
	PnLevel    *lvl;
	ListCell   *lc;

	check_stack_depth();
	if (q == NULL || q->commandType != CMD_SELECT)
		return false;
	lvl = pn_level(parent, q);

	if (q->setOperations != NULL)
	{
		/* the column of every branch, whatever the operation */
		List	   *todo = list_make1(q->setOperations);

		while (todo != NIL)
		{
			Node	   *n = linitial(todo);

			todo = list_delete_first(todo);
			if (IsA(n, SetOperationStmt))
			{
				todo = lappend(todo, ((SetOperationStmt *) n)->larg);
				todo = lappend(todo, ((SetOperationStmt *) n)->rarg);
			}
			else if (IsA(n, RangeTblRef))
			{
				RangeTblEntry *rte = rt_fetch(((RangeTblRef *) n)->rtindex, q->rtable);

				if (rte->rtekind != RTE_SUBQUERY ||
					!pn_query_column_notnull(lvl, rte->subquery, attno))
					return false;
			}
			else
				return false;
		}
		return true;
	}

	foreach(lc, q->targetList)
	{
		TargetEntry *te = lfirst_node(TargetEntry, lc);

		if (te->resno == attno && !te->resjunk)
			return pn_expr_notnull(lvl, (Node *) te->expr);
	}
	return false;
}

bool
pulse_page_column_notnull(Query *query, AttrNumber attno)
{
	return pn_query_column_notnull(NULL, query, attno);
}
