/*-------------------------------------------------------------------------
 *
 * explain_page.c
 *		Whether an index serves the order of a page: pulse.explain_page()
 *		and the check behind pulse.require_index_for_page.
 *
 * Both look at the generic plan of a page's prepared query (page_cache.c)
 * and follow it down from the Limit along the nodes that keep their input's
 * order: a Sort on the way means every page sorts the rows of a scan, an
 * index scan means the index provides the order and a deep page costs what
 * the first one does.  When a sort is needed, the index to create is
 * suggested: on the table the sort keys come from, the columns the query
 * compares with "=" first, then the sort keys in their directions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/plannodes.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/resowner.h"

#include "pulse.h"

PG_FUNCTION_INFO_V1(pulse_explain_page);

/* What the plan of a page says about its order. */
typedef struct EpPlanInfo
{
	bool		sort;			/* a Sort orders the rows */
	bool		incremental;	/* an Incremental Sort does */
	char	   *index;			/* index providing the order, if any */
	const char *scan;			/* node name of the scan under the limit */
} EpPlanInfo;

static const char *
ep_node_name(Plan *p)
{
	switch (nodeTag(p))
	{
		case T_SeqScan:
			return "Seq Scan";
		case T_IndexScan:
			return "Index Scan";
		case T_IndexOnlyScan:
			return "Index Only Scan";
		case T_BitmapHeapScan:
			return "Bitmap Heap Scan";
		case T_Sort:
			return "Sort";
		case T_IncrementalSort:
			return "Incremental Sort";
		case T_MergeAppend:
			return "Merge Append";
		case T_Append:
			return "Append";
		case T_NestLoop:
			return "Nested Loop";
		case T_MergeJoin:
			return "Merge Join";
		case T_HashJoin:
			return "Hash Join";
		case T_SubqueryScan:
			return "Subquery Scan";
		case T_FunctionScan:
			return "Function Scan";
		case T_ValuesScan:
			return "Values Scan";
		case T_CteScan:
			return "CTE Scan";
		case T_Agg:
			return "Aggregate";
		case T_Result:
			return "Result";
		case T_Gather:
			return "Gather";
		case T_GatherMerge:
			return "Gather Merge";
		case T_Unique:
			return "Unique";
		case T_WindowAgg:
			return "WindowAgg";
		default:
			return "Other";
	}
}

/* The index a Merge Append's first input scans, or a sort under it. */
static void
ep_inspect_merge_append(MergeAppend *ma, EpPlanInfo *pi)
{
	Plan	   *first;

	pi->scan = ep_node_name((Plan *) ma);
	if (ma->mergeplans == NIL)
		return;
	first = linitial(ma->mergeplans);
	if (IsA(first, IndexScan))
		pi->index = get_rel_name(((IndexScan *) first)->indexid);
	else if (IsA(first, IndexOnlyScan))
		pi->index = get_rel_name(((IndexOnlyScan *) first)->indexid);
	else if (IsA(first, Sort))
		pi->sort = true;
}

/*
 * Follows the plan from below the Limit along the nodes that preserve their
 * input order, and records whether a sort or an index provides the order.
 */
static void
ep_inspect_plan(Plan *p, EpPlanInfo *pi)
{
	while (p != NULL)
	{
		switch (nodeTag(p))
		{
			case T_Limit:
			case T_Result:
			case T_NestLoop:
			case T_MergeJoin:
			case T_GatherMerge:
			case T_Unique:
				p = outerPlan(p);
				continue;
			case T_SubqueryScan:
				p = ((SubqueryScan *) p)->subplan;
				continue;
			case T_Sort:
				pi->sort = true;
				pi->scan = ep_node_name(outerPlan(p) ? outerPlan(p) : p);
				return;
			case T_IncrementalSort:
				pi->incremental = true;
				p = outerPlan(p);
				continue;
			case T_IndexScan:
				pi->index = get_rel_name(((IndexScan *) p)->indexid);
				pi->scan = ep_node_name(p);
				return;
			case T_IndexOnlyScan:
				pi->index = get_rel_name(((IndexOnlyScan *) p)->indexid);
				pi->scan = ep_node_name(p);
				return;
			case T_MergeAppend:
				ep_inspect_merge_append((MergeAppend *) p, pi);
				return;
			default:
				pi->scan = ep_node_name(p);
				return;
		}
	}
}

/* Inspects the generic plan of a saved SPI plan.  Caller is in SPI. */
static void
ep_plan_info(SPIPlanPtr plan, EpPlanInfo *pi)
{
	CachedPlan *cplan;
	ListCell   *lc;

	memset(pi, 0, sizeof(*pi));
	cplan = SPI_plan_get_cached_plan(plan);
	if (cplan == NULL)
		elog(ERROR, "could not get the plan of a pulse.page query");
	foreach(lc, cplan->stmt_list)
	{
		PlannedStmt *ps = lfirst_node(PlannedStmt, lc);

		ep_inspect_plan(ps->planTree, pi);
	}
	ReleaseCachedPlan(cplan, CurrentResourceOwner);
}

/* "CREATE INDEX ON t (eq columns, sort keys)", or NULL without a table. */
static char *
ep_suggested_index(const PageQueryInfo *info)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first = true;

	if (!OidIsValid(info->origin_rel))
		return NULL;
	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE INDEX ON %s (",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(info->origin_rel)),
												get_rel_name(info->origin_rel)));
	foreach(lc, info->eq_columns)
	{
		bool		dup = false;

		for (int i = 0; i < info->nkeys; i++)
			if (strcmp(info->keys[i].name, (char *) lfirst(lc)) == 0)
				dup = true;
		if (dup)
			continue;
		appendStringInfo(&buf, "%s%s", first ? "" : ", ", quote_identifier(lfirst(lc)));
		first = false;
	}
	for (int i = 0; i < info->nkeys; i++)
	{
		appendStringInfo(&buf, "%s%s", first ? "" : ", ", quote_identifier(info->keys[i].name));
		if (info->keys[i].desc)
			appendStringInfoString(&buf, " DESC");
		if (info->keys[i].nulls_first != info->keys[i].desc)
			appendStringInfo(&buf, " NULLS %s", info->keys[i].nulls_first ? "FIRST" : "LAST");
		first = false;
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

void
pulse_page_check_index(PageCacheEntry *e)
{
	char	   *idx;

	if (!pulse_require_index_for_page)
		return;
	if (e->sort_state < 0)
	{
		EpPlanInfo	pi;

		ep_plan_info(e->plan, &pi);
		e->sort_state = pi.sort ? 1 : 0;
	}
	if (e->sort_state == 0)
		return;
	idx = ep_suggested_index(e->info);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no index serves the order of this page"),
			 errdetail("The plan sorts the rows of a scan, so the cost of a page grows with the table."),
			 idx ? errhint("Create an index matching the order: %s", idx)
			 : errhint("Create an index on the sort keys, in this order and direction.")));
}

static void
ep_push_bool(JsonbParseState **st, const char *key, bool b)
{
	JsonbValue	v;

	pulse_page_json_key(st, key);
	v.type = jbvBool;
	v.val.boolean = b;
	pushJsonbValue(st, WJB_VALUE, &v);
}

/*
 * pulse.explain_page(query text, order_by text, args jsonb DEFAULT '[]')
 * RETURNS jsonb
 *
 * Describes the plan of a page after a cursor (the deep-page case):
 * whether an index provides the order, and if not which index would.
 */
Datum
pulse_explain_page(PG_FUNCTION_ARGS)
{
	char	   *query;
	char	   *order_by;
	Jsonb	   *args;
	PageCacheEntry *e;
	PageQueryInfo *info;
	EpPlanInfo	pi;
	bool		nullmask[PULSE_PAGE_MAX_KEYS];
	JsonbParseState *st = NULL;
	JsonbValue	v;
	Jsonb	   *result;
	char	   *suggestion = NULL;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext spicxt;

	pulse_page_require_arg(fcinfo, 0, "query");
	pulse_page_require_arg(fcinfo, 1, "order_by");
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	order_by = text_to_cstring(PG_GETARG_TEXT_PP(1));
	args = pulse_page_check_args(PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2));

	memset(nullmask, 0, sizeof(nullmask));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	e = pulse_page_cache_get(query, order_by, JB_ROOT_COUNT(args),
							 true, false, nullmask, 51);
	info = e->info;
	ep_plan_info(e->plan, &pi);
	if (pi.sort)
		suggestion = ep_suggested_index(info);

	spicxt = MemoryContextSwitchTo(callcxt);
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	ep_push_bool(&st, "index_serves_order", !pi.sort && pi.index != NULL);
	pulse_page_json_key(&st, "index");
	pulse_page_json_text(&st, pi.index);
	ep_push_bool(&st, "sort_needed", pi.sort);
	ep_push_bool(&st, "incremental_sort", pi.incremental);
	pulse_page_json_key(&st, "scan");
	pulse_page_json_text(&st, pi.scan);
	pulse_page_json_key(&st, "suggested_index");
	pulse_page_json_text(&st, suggestion);

	pulse_page_json_key(&st, "nullable_keys");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < info->nkeys; i++)
	{
		if (info->keynotnull[i])
			continue;
		v.type = jbvString;
		v.val.string.val = info->keys[i].name;
		v.val.string.len = strlen(info->keys[i].name);
		pushJsonbValue(&st, WJB_ELEM, &v);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);

	pulse_page_json_key(&st, "fingerprint");
	pulse_page_json_text(&st, info->fingerprint);
	pulse_page_json_key(&st, "sql");
	pulse_page_json_text(&st, e->sql);
	result = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	MemoryContextSwitchTo(spicxt);

	SPI_finish();
	PG_RETURN_JSONB_P(result);
}
