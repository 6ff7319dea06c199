/*-------------------------------------------------------------------------
 *
 * page_query.c
 *		What pulse.page learns about the caller's query before it pages
 *		through it: that it is one plain SELECT, the types of its parameters
 *		and sort keys, which keys are proven NOT NULL, and which table and
 *		equality filters an index for the order would start from.
 *
 * The query is prepared once as "SELECT * FROM (<query>) AS pulse_q" with
 * the parameter types left to the parser (as PREPARE does), and everything
 * is read from that analysed and rewritten statement: the result columns
 * give the key types, the rewritten Query tree the nullability proof
 * (page_nullable.c).  The analysis is cached with the page's plans
 * (page_cache.c) and redone when a relation it read changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_param.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"

#include "pulse.h"

/* parser setup hook state for variable parameters */
typedef struct PqParamState
{
	Oid		   *types;
	int			ntypes;
} PqParamState;

static void
pq_parser_setup(ParseState *pstate, void *arg)
{
	PqParamState *s = (PqParamState *) arg;

	setup_parse_variable_parameters(pstate, &s->types, &s->ntypes);
}

/*
 * Checks that query is one plain SELECT without ORDER BY, LIMIT, OFFSET or
 * INTO, and returns exactly its text (without a trailing semicolon).
 */
static char *
pq_extract_select(const char *query)
{
	List	   *raw;
	RawStmt    *rs;
	SelectStmt *sel;
	int			len;

	raw = raw_parser(query, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be exactly one SELECT statement")));
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a SELECT statement")));
	sel = (SelectStmt *) rs->stmt;
	if (sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->limitOffset != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must not have ORDER BY, LIMIT or OFFSET"),
				 errhint("Pass the order as order_by and the page size as page_size.")));
	if (sel->intoClause != NULL || sel->lockingClause != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must not have INTO or a locking clause")));
	len = rs->stmt_len > 0 ? rs->stmt_len : (int) strlen(query) - rs->stmt_location;
	return pnstrdup(query + rs->stmt_location, len);
}

/*
 * Collects the names of columns of rel that q's WHERE clause compares with
 * "=" to a constant or parameter: they lead a suggested index.
 */
static List *
pq_eq_columns(Query *q, Oid rel)
{
	List	   *result = NIL;
	List	   *conds;
	Node	   *quals;
	ListCell   *lc;

	if (q->jointree == NULL || q->jointree->quals == NULL)
		return NIL;
	quals = q->jointree->quals;
	if (IsA(quals, BoolExpr) && ((BoolExpr *) quals)->boolop == AND_EXPR)
		conds = ((BoolExpr *) quals)->args;
	else
		conds = list_make1(quals);
	foreach(lc, conds)
	{
		OpExpr	   *op = (OpExpr *) lfirst(lc);
		Node	   *l,
				   *r;
		Var		   *var = NULL;
		char	   *opname;
		RangeTblEntry *rte;

		if (!IsA(op, OpExpr) || list_length(op->args) != 2)
			continue;
		opname = get_opname(op->opno);
		if (opname == NULL || strcmp(opname, "=") != 0)
			continue;
		l = strip_implicit_coercions(linitial(op->args));
		r = strip_implicit_coercions(lsecond(op->args));
		if (IsA(l, Var) && (IsA(r, Const) || IsA(r, Param)))
			var = (Var *) l;
		else if (IsA(r, Var) && (IsA(l, Const) || IsA(l, Param)))
			var = (Var *) r;
		if (var == NULL || var->varlevelsup != 0 || var->varattno <= 0)
			continue;
		rte = rt_fetch(var->varno, q->rtable);
		if (rte->rtekind != RTE_RELATION || rte->relid != rel)
			continue;
		result = lappend(result, get_attname(rel, var->varattno, false));
	}
	return result;
}

/* Prepares the wrapped query and sets info's parameter types.  In SPI. */
static SPIPlanPtr
pq_prepare(PageQueryInfo *info, int nargs)
{
	PqParamState ps;
	SPIPrepareOptions opts;
	SPIPlanPtr	plan;

	ps.ntypes = nargs;
	ps.types = nargs > 0 ? palloc0(sizeof(Oid) * nargs) : NULL;
	memset(&opts, 0, sizeof(opts));
	opts.parserSetup = pq_parser_setup;
	opts.parserSetupArg = &ps;
	opts.cursorOptions = CURSOR_OPT_PARALLEL_OK;
	plan = SPI_prepare_extended(psprintf("SELECT * FROM (\n%s\n) AS pulse_q", info->stmt),
								&opts);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_extended failed: %s",
			 SPI_result_code_string(SPI_result));

	if (ps.ntypes != nargs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query uses parameters up to $%d but args has %d element%s",
						ps.ntypes, nargs, nargs == 1 ? "" : "s")));
	for (int i = 0; i < ps.ntypes; i++)
		if (ps.types[i] == InvalidOid || ps.types[i] == UNKNOWNOID)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not determine the type of parameter $%d", i + 1),
					 errdetail("args has %d elements; the query must use each of $1..$%d.", nargs, nargs),
					 errhint("Add a cast such as $%d::text.", i + 1)));
	info->nparams = ps.ntypes;
	info->paramtypes = ps.types;
	return plan;
}

/* The result column named name; 42703 or 42702 unless exactly one. */
static int
pq_find_column(TupleDesc desc, const char *name)
{
	int			found = -1;

	for (int a = 0; a < desc->natts; a++)
	{
		if (strcmp(NameStr(TupleDescAttr(desc, a)->attname), name) != 0)
			continue;
		if (found >= 0)
			ereport(ERROR,
					(errcode(ERRCODE_AMBIGUOUS_COLUMN),
					 errmsg("order_by column \"%s\" is ambiguous: the query returns it twice",
							name)));
		found = a;
	}
	if (found < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("order_by column \"%s\" is not a column of the query",
						name)));
	return found;
}

/*
 * A cursor must be able to read the key's value back: values of an
 * anonymous record type can be sent but not received.
 */
static void
pq_check_key_type(const char *name, Oid type)
{
	Oid			elem = get_element_type(type);

	if (type == RECORDOID || elem == RECORDOID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order_by column \"%s\" is of an anonymous record type", name),
				 errdetail("A cursor could not read its values back."),
				 errhint("Sort by its fields, or cast it to a named composite type.")));
}

/*
 * What a cursor's values depend on beyond the query text, bound into it:
 * for each key its type, typmod and collation, each parameter's type, and
 * the tables the query reads (the same text may name other ones under
 * another search_path).  OIDs, not names: a type or table dropped and
 * created again is another one.
 */
static char *
pq_signature(const PageQueryInfo *info, TupleDesc desc, const int *cols,
			 List *relids)
{
	StringInfoData buf;
	List	   *sorted = list_copy(relids);
	ListCell   *lc;

	initStringInfo(&buf);
	for (int k = 0; k < info->nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, cols[k]);

		appendStringInfo(&buf, "k%u/%d/%u;", att->atttypid, att->atttypmod,
						 att->attcollation);
	}
	for (int i = 0; i < info->nparams; i++)
		appendStringInfo(&buf, "p%u;", info->paramtypes[i]);
	list_sort(sorted, list_oid_cmp);
	foreach(lc, sorted)
		appendStringInfo(&buf, "r%u;", lfirst_oid(lc));
	return buf.data;
}

PageQueryInfo *
pulse_page_analyze(const char *query, PageKey *keys, int nkeys, int nargs)
{
	PageQueryInfo *info = palloc0(sizeof(PageQueryInfo));
	SPIPlanPtr	plan;
	CachedPlanSource *src;
	TupleDesc	desc;
	Query	   *top;
	Query	   *inner = NULL;
	int		   *cols = palloc(sizeof(int) * nkeys);

	info->stmt = pq_extract_select(query);
	pulse_fingerprint_text(info->stmt, info->fingerprint);
	info->nkeys = nkeys;
	info->keys = keys;
	info->order_canon = pulse_page_order_sql(keys, nkeys, false);

	plan = pq_prepare(info, nargs);
	src = linitial(SPI_plan_get_plan_sources(plan));
	desc = src->resultDesc;
	top = linitial_node(Query, src->query_list);
	if (list_length(top->rtable) == 1 &&
		linitial_node(RangeTblEntry, top->rtable)->rtekind == RTE_SUBQUERY)
		inner = linitial_node(RangeTblEntry, top->rtable)->subquery;

	info->keytypes = palloc(sizeof(Oid) * nkeys);
	info->keynotnull = palloc(sizeof(bool) * nkeys);
	for (int k = 0; k < nkeys; k++)
	{
		TargetEntry *te;

		cols[k] = pq_find_column(desc, keys[k].name);
		info->keytypes[k] = TupleDescAttr(desc, cols[k])->atttypid;
		pq_check_key_type(keys[k].name, info->keytypes[k]);
		info->keynotnull[k] = pulse_page_column_notnull(top, cols[k] + 1);

		/* the table behind the keys, for a suggested index */
		te = list_nth_node(TargetEntry, top->targetList, cols[k]);
		if (k == 0)
			info->origin_rel = te->resorigtbl;
		else if (info->origin_rel != te->resorigtbl)
			info->origin_rel = InvalidOid;
	}
	info->signature = pq_signature(info, desc, cols, src->relationOids);
	if (OidIsValid(info->origin_rel) && inner != NULL)
		info->eq_columns = pq_eq_columns(inner, info->origin_rel);

	SPI_freeplan(plan);
	return info;
}
