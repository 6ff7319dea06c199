/*-------------------------------------------------------------------------
 *
 * page.c
 *		Keyset ("seek") pagination: pulse.page() and pulse.explain_page().
 *
 * pulse.page(query, order_by, cursor, page_size, args) wraps a caller's
 * SELECT as a subquery and pages through it in the order order_by names:
 *
 *		SELECT to_jsonb(pulse_q.*), pulse_q."k1", ..., pulse_q."kn"
 *		FROM (<query>) AS pulse_q
 *		WHERE <rows strictly after the cursor's key values>
 *		ORDER BY pulse_q."k1" ASC NULLS LAST, ...
 *		LIMIT page_size + 1
 *
 * The planner pulls the subquery up, so an index on the sort keys (after
 * any equality-filtered columns) serves both the order and the predicate,
 * and the cost of a page does not depend on how deep it is.  When every
 * sort key is known NOT NULL the predicate is a chain of row comparisons,
 * one per run of keys sharing a direction, led by a redundant bound on the
 * first run that the index uses as its start key:
 *
 *		(a, b) >= ($1, $2) AND ((a, b) > ($1, $2) OR ((a, b) = ($1, $2) AND c < $3))
 *
 * Keys that may be NULL get the general form, which spells out where NULLs
 * sort (NULLS FIRST/LAST) so that every row is returned exactly once.
 * Backward pages use the same construction on the reversed order and
 * reverse the rows they fetched.
 *
 * Values are never interpolated: the caller's $1..$n come from the args
 * JSON array, converted with the input function of the type the parser
 * inferred for each parameter, and cursor key values are bound as further
 * parameters typed like the key columns.  Identifiers are always quoted.
 *
 * Cursor key values are stored in the type's binary send form, so that a
 * cursor means the same thing whatever DateStyle, TimeZone or
 * extra_float_digits the session that decodes it uses.
 *
 * Plans are prepared once per query text, order, direction and page size,
 * kept in a backend-local cache (PageCacheEntry) that lives in its own
 * memory context under CacheMemoryContext, and dropped on any relcache
 * invalidation (a column type may have changed).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "parser/parse_param.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/plancache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "pulse.h"

#define PAGE_MAX_KEYS		32
#define PAGE_MAX_SIZE		10000
#define PAGE_MAX_ARGS		100
#define PAGE_CACHE_MAX		256

PG_FUNCTION_INFO_V1(pulse_page);
PG_FUNCTION_INFO_V1(pulse_explain_page);
PG_FUNCTION_INFO_V1(pulse_page_cache_stats);

/* One sort key of order_by, as written by the caller. */
typedef struct PageKey
{
	char	   *name;			/* column name, unquoted */
	bool		desc;
	bool		nulls_first;
} PageKey;

/* What is known about the base query, independent of cursor and direction. */
typedef struct PageQueryInfo
{
	char	   *stmt;			/* the single SELECT, without ';' */
	int			nparams;
	Oid		   *paramtypes;		/* inferred types of $1..$nparams */
	int			nkeys;
	PageKey    *keys;
	Oid		   *keytypes;
	bool	   *keynotnull;		/* key known never NULL */
	Oid			origin_rel;		/* table the sort keys come from, or 0 */
	List	   *eq_columns;		/* names of columns filtered by = */
	char		fingerprint[PULSE_FINGERPRINT_LEN + 1];
	char	   *order_canon;	/* canonical order_by, bound into cursors */
} PageQueryInfo;

/* A prepared keyset query for one variant of a page. */
typedef struct PageCacheEntry
{
	uint64		hash;			/* hash key; must be first */
	char	   *key;			/* full cache key, to rule out collisions */
	PageQueryInfo *info;
	SPIPlanPtr	plan;
	char	   *sql;
	int			sort_state;		/* -1 unknown, 0 index order, 1 sort */
	bool		stale;			/* a relation it reads was invalidated */
	MemoryContext cxt;			/* holds everything below */
	int			nrelids;
	Oid		   *relids;			/* relations the plan depends on */
} PageCacheEntry;

static MemoryContext page_cache_cxt = NULL;
static uint64 page_cache_hits = 0;
static uint64 page_cache_prepares = 0;
static HTAB *page_cache = NULL;
static bool page_cache_callback_registered = false;

/* parser setup hook state for variable parameters */
typedef struct PageParamState
{
	Oid		   *types;
	int			ntypes;
} PageParamState;

/*
 * Relcache invalidation callback: a column's type may have changed under a
 * cached analysis.  It may fire in the middle of executing a cached plan,
 * so it only marks the entries that depend on the relation (all of them for
 * InvalidOid) stale; page_get_entry re-prepares a stale entry when no page
 * is running.
 */
static int	page_depth = 0;			/* pulse.page calls under way */

static void
page_cache_mark_stale(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	PageCacheEntry *e;

	if (page_cache == NULL)
		return;
	hash_seq_init(&status, page_cache);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(relid))
			e->stale = true;
		else
			for (int i = 0; i < e->nrelids; i++)
				if (e->relids[i] == relid)
					e->stale = true;
	}
}

/* Frees every cached plan and the cache.  Caller ensures none is in use. */
static void
page_cache_drop(void)
{
	if (page_cache != NULL)
	{
		HASH_SEQ_STATUS status;
		PageCacheEntry *e;

		hash_seq_init(&status, page_cache);
		while ((e = hash_seq_search(&status)) != NULL)
		{
			if (e->plan)
				SPI_freeplan(e->plan);
		}
	}
	if (page_cache_cxt != NULL)
		MemoryContextDelete(page_cache_cxt);
	page_cache_cxt = NULL;
	page_cache = NULL;
}

static void
page_cache_init(void)
{
	HASHCTL		ctl;

	if (page_cache != NULL)
		return;
	if (!page_cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(page_cache_mark_stale, (Datum) 0);
		page_cache_callback_registered = true;
	}
	/* Lives as long as the backend, or until the next invalidation. */
	page_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
										   "pulse page cache",
										   ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(PageCacheEntry);
	ctl.hcxt = page_cache_cxt;
	page_cache = hash_create("pulse page cache", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static void
page_parser_setup(ParseState *pstate, void *arg)
{
	PageParamState *s = (PageParamState *) arg;

	setup_parse_variable_parameters(pstate, &s->types, &s->ntypes);
}

/* ------------------------------------------------------------------------
 * order_by parsing
 * ------------------------------------------------------------------------
 */

static void
page_order_error(const char *order_by, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid order_by: \"%s\"", order_by),
			 errdetail("%s", detail),
			 errhint("Use a comma-separated list of column names, each optionally followed by ASC or DESC and NULLS FIRST or NULLS LAST.")));
}

static bool
page_is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		(unsigned char) c >= 0x80;
}

static bool
page_is_ident_char(char c)
{
	return page_is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Reads one identifier at *p (quoted or not); returns it, advances *p. */
static char *
page_read_ident(const char *order_by, const char **p)
{
	const char *s = *p;
	StringInfoData buf;

	initStringInfo(&buf);
	if (*s == '"')
	{
		s++;
		for (;;)
		{
			if (*s == '\0')
				page_order_error(order_by, "unterminated quoted identifier");
			if (*s == '"')
			{
				if (s[1] == '"')
				{
					appendStringInfoChar(&buf, '"');
					s += 2;
					continue;
				}
				s++;
				break;
			}
			appendStringInfoChar(&buf, *s++);
		}
		if (buf.len == 0)
			page_order_error(order_by, "zero-length quoted identifier");
	}
	else if (page_is_ident_start(*s))
	{
		while (page_is_ident_char(*s))
		{
			char		c = *s++;

			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			appendStringInfoChar(&buf, c);
		}
	}
	else
		return NULL;
	*p = s;
	return buf.data;
}

static void
page_skip_space(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

/* Reads a bare word (keyword) if one is next; lower-cased. */
static char *
page_read_word(const char **p)
{
	const char *s = *p;

	if (*s == '"' || !page_is_ident_start(*s))
		return NULL;
	return page_read_ident(NULL, p);
}

/*
 * Parses order_by into keys.  Raises 22023 on anything but a list of
 * column names with optional ASC/DESC and NULLS FIRST/LAST.
 */
static PageKey *
page_parse_order(const char *order_by, int *nkeys)
{
	PageKey    *keys = palloc0(sizeof(PageKey) * PAGE_MAX_KEYS);
	const char *p = order_by;
	int			n = 0;

	for (;;)
	{
		PageKey    *k;
		char	   *word;
		const char *save;
		bool		nulls_given = false;

		page_skip_space(&p);
		if (n == PAGE_MAX_KEYS)
			page_order_error(order_by, psprintf("at most %d sort keys are allowed", PAGE_MAX_KEYS));
		k = &keys[n];
		k->name = page_read_ident(order_by, &p);
		if (k->name == NULL)
			page_order_error(order_by, *p ? "expected a column name" : "no sort key given");
		for (int i = 0; i < n; i++)
			if (strcmp(keys[i].name, k->name) == 0)
				page_order_error(order_by, psprintf("column \"%s\" appears twice", k->name));

		page_skip_space(&p);
		save = p;
		word = page_read_word(&p);
		if (word && strcmp(word, "asc") == 0)
			k->desc = false;
		else if (word && strcmp(word, "desc") == 0)
			k->desc = true;
		else
			p = save;

		page_skip_space(&p);
		save = p;
		word = page_read_word(&p);
		if (word && strcmp(word, "nulls") == 0)
		{
			page_skip_space(&p);
			word = page_read_word(&p);
			if (word && strcmp(word, "first") == 0)
				k->nulls_first = true;
			else if (word && strcmp(word, "last") == 0)
				k->nulls_first = false;
			else
				page_order_error(order_by, "NULLS must be followed by FIRST or LAST");
			nulls_given = true;
		}
		else
			p = save;
		if (!nulls_given)
			k->nulls_first = k->desc;	/* PostgreSQL's default */
		n++;

		page_skip_space(&p);
		if (*p == '\0')
			break;
		if (*p != ',')
			page_order_error(order_by, psprintf("unexpected \"%s\"", p));
		p++;
	}
	*nkeys = n;
	return keys;
}

static char *
page_order_canonical(PageKey *keys, int nkeys, bool reverse)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < nkeys; i++)
	{
		bool		desc = keys[i].desc != reverse;
		bool		nf = keys[i].nulls_first != reverse;

		appendStringInfo(&buf, "%spulse_q.%s %s NULLS %s",
						 i ? ", " : "", quote_identifier(keys[i].name),
						 desc ? "DESC" : "ASC", nf ? "FIRST" : "LAST");
	}
	return buf.data;
}

/* ------------------------------------------------------------------------
 * Base query analysis
 * ------------------------------------------------------------------------
 */

/*
 * Checks that query is one plain SELECT without ORDER BY, LIMIT, OFFSET or
 * INTO, and returns exactly its text (without a trailing semicolon).
 */
static char *
page_extract_select(const char *query)
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

/* Returns true if the query's range table holds an outer join. */
static bool
page_has_outer_join(Query *q)
{
	ListCell   *lc;

	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_JOIN && rte->jointype != JOIN_INNER)
			return true;
		if (rte->rtekind == RTE_SUBQUERY && page_has_outer_join(rte->subquery))
			return true;
	}
	return false;
}

/*
 * Collects the names of columns of rel that q's WHERE clause compares with
 * "=" to a constant or parameter: they lead a suggested index.
 */
static List *
page_eq_columns(Query *q, Oid rel)
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

/*
 * Prepares "SELECT * FROM (<stmt>) pulse_q" with the parameter types left
 * to the parser, and learns from it the parameters' types, the key columns'
 * types and whether each key can be NULL.  Caller is connected to SPI.
 */
static PageQueryInfo *
page_analyze(const char *query, PageKey *keys, int nkeys, int nargs)
{
	PageQueryInfo *info = palloc0(sizeof(PageQueryInfo));
	PageParamState ps;
	SPIPrepareOptions opts;
	SPIPlanPtr	plan;
	CachedPlanSource *src;
	TupleDesc	desc;
	Query	   *top;
	Query	   *inner = NULL;
	bool		outer_join;

	info->stmt = page_extract_select(query);
	pulse_fingerprint_text(info->stmt, info->fingerprint);
	info->nkeys = nkeys;
	info->keys = keys;
	info->order_canon = page_order_canonical(keys, nkeys, false);

	ps.ntypes = nargs;
	ps.types = nargs > 0 ? palloc0(sizeof(Oid) * nargs) : NULL;
	memset(&opts, 0, sizeof(opts));
	opts.parserSetup = page_parser_setup;
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

	src = linitial(SPI_plan_get_plan_sources(plan));
	desc = src->resultDesc;
	top = linitial_node(Query, src->query_list);
	if (list_length(top->rtable) == 1 &&
		linitial_node(RangeTblEntry, top->rtable)->rtekind == RTE_SUBQUERY)
		inner = linitial_node(RangeTblEntry, top->rtable)->subquery;
	outer_join = inner == NULL || page_has_outer_join(inner);

	info->keytypes = palloc(sizeof(Oid) * nkeys);
	info->keynotnull = palloc(sizeof(bool) * nkeys);
	for (int k = 0; k < nkeys; k++)
	{
		int			found = -1;
		TargetEntry *te;

		for (int a = 0; a < desc->natts; a++)
		{
			if (strcmp(NameStr(TupleDescAttr(desc, a)->attname), keys[k].name) == 0)
			{
				if (found >= 0)
					ereport(ERROR,
							(errcode(ERRCODE_AMBIGUOUS_COLUMN),
							 errmsg("order_by column \"%s\" is ambiguous: the query returns it twice",
									keys[k].name)));
				found = a;
			}
		}
		if (found < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("order_by column \"%s\" is not a column of the query",
							keys[k].name)));
		info->keytypes[k] = TupleDescAttr(desc, found)->atttypid;

		/* NOT NULL only when it is a plain table column, never outer-joined */
		info->keynotnull[k] = false;
		te = list_nth_node(TargetEntry, top->targetList, found);
		if (!outer_join && OidIsValid(te->resorigtbl) && te->resorigcol > 0)
		{
			HeapTuple	tp = SearchSysCacheAttNum(te->resorigtbl, te->resorigcol);

			if (HeapTupleIsValid(tp))
			{
				info->keynotnull[k] = ((Form_pg_attribute) GETSTRUCT(tp))->attnotnull;
				ReleaseSysCache(tp);
			}
		}
		if (k == 0)
			info->origin_rel = te->resorigtbl;
		else if (info->origin_rel != te->resorigtbl)
			info->origin_rel = InvalidOid;
	}
	if (OidIsValid(info->origin_rel) && inner != NULL)
		info->eq_columns = page_eq_columns(inner, info->origin_rel);

	SPI_freeplan(plan);
	return info;
}

/* ------------------------------------------------------------------------
 * Keyset SQL
 * ------------------------------------------------------------------------
 */

/* Appends "(k_from, ..., k_to)" or "($p_from, ...)" for a run of keys. */
static void
page_append_row(StringInfo buf, PageQueryInfo *info, int from, int to,
				bool params, int param_base)
{
	if (to > from)
		appendStringInfoChar(buf, '(');
	for (int i = from; i <= to; i++)
	{
		if (i > from)
			appendStringInfoString(buf, ", ");
		if (params)
			appendStringInfo(buf, "$%d", param_base + i + 1);
		else
			appendStringInfo(buf, "pulse_q.%s", quote_identifier(info->keys[i].name));
	}
	if (to > from)
		appendStringInfoChar(buf, ')');
}

/*
 * Rows strictly after the cursor for keys i..n-1, general form (NULLs
 * allowed).  nullmask[i]: the cursor's value for key i is NULL.
 */
static void
page_append_after_general(StringInfo buf, PageQueryInfo *info, bool reverse,
						  const bool *nullmask, int i, int pb)
{
	const char *col = quote_identifier(info->keys[i].name);
	bool		desc = info->keys[i].desc != reverse;
	bool		nf = info->keys[i].nulls_first != reverse;
	bool		last = (i == info->nkeys - 1);
	bool		notnull = info->keynotnull[i];
	StringInfoData strict;

	/* strictly after on key i */
	initStringInfo(&strict);
	if (nullmask[i])
	{
		/* NULLS FIRST: every non-NULL value is after; NULLS LAST: none */
		if (nf)
			appendStringInfo(&strict, "pulse_q.%s IS NOT NULL", col);
	}
	else
	{
		appendStringInfo(&strict, "pulse_q.%s %s $%d", col, desc ? "<" : ">", pb + i + 1);
		if (!nf && !notnull)
			appendStringInfo(&strict, " OR pulse_q.%s IS NULL", col);
	}

	if (last)
	{
		appendStringInfo(buf, "(%s)", strict.len ? strict.data : "false");
		return;
	}

	appendStringInfoChar(buf, '(');
	if (strict.len)
		appendStringInfo(buf, "%s OR ", strict.data);
	if (nullmask[i])
		appendStringInfo(buf, "(pulse_q.%s IS NULL AND ", col);
	else
		appendStringInfo(buf, "(pulse_q.%s = $%d AND ", col, pb + i + 1);
	page_append_after_general(buf, info, reverse, nullmask, i + 1, pb);
	appendStringInfoString(buf, "))");
}

/*
 * Rows strictly after the cursor when every key is NOT NULL: row
 * comparisons over runs of keys sharing a direction, starting at key i.
 */
static void
page_append_after_rows(StringInfo buf, PageQueryInfo *info, bool reverse,
					   int i, int pb)
{
	int			j = i;
	bool		desc = info->keys[i].desc != reverse;

	while (j + 1 < info->nkeys && (info->keys[j + 1].desc != reverse) == desc)
		j++;

	page_append_row(buf, info, i, j, false, 0);
	appendStringInfoString(buf, desc ? " < " : " > ");
	page_append_row(buf, info, i, j, true, pb);
	if (j + 1 < info->nkeys)
	{
		appendStringInfoString(buf, " OR (");
		page_append_row(buf, info, i, j, false, 0);
		appendStringInfoString(buf, " = ");
		page_append_row(buf, info, i, j, true, pb);
		appendStringInfoString(buf, " AND (");
		page_append_after_rows(buf, info, reverse, j + 1, pb);
		appendStringInfoString(buf, "))");
	}
}

/*
 * The WHERE clause of a page after (in the possibly reversed order) the
 * cursor values, with the key values at $pb+1..$pb+nkeys.
 */
static char *
page_predicate(PageQueryInfo *info, bool reverse, const bool *nullmask, int pb)
{
	StringInfoData buf;
	bool		all_notnull = true;
	int			run_end = 0;
	bool		desc0 = info->keys[0].desc != reverse;

	initStringInfo(&buf);
	for (int i = 0; i < info->nkeys; i++)
		if (!info->keynotnull[i] || nullmask[i])
			all_notnull = false;

	/*
	 * The leading run of same-direction keys that are NOT NULL with a
	 * non-NULL cursor value gives a necessary condition an index can start
	 * its scan from.  Only worth adding when it differs from the predicate.
	 */
	while (run_end < info->nkeys &&
		   info->keynotnull[run_end] && !nullmask[run_end] &&
		   (info->keys[run_end].desc != reverse) == desc0)
		run_end++;

	if (all_notnull)
	{
		if (run_end < info->nkeys)
		{
			page_append_row(&buf, info, 0, run_end - 1, false, 0);
			appendStringInfoString(&buf, desc0 ? " <= " : " >= ");
			page_append_row(&buf, info, 0, run_end - 1, true, pb);
			appendStringInfoString(&buf, " AND (");
			page_append_after_rows(&buf, info, reverse, 0, pb);
			appendStringInfoChar(&buf, ')');
		}
		else
			page_append_after_rows(&buf, info, reverse, 0, pb);
	}
	else
	{
		if (run_end > 0)
		{
			page_append_row(&buf, info, 0, run_end - 1, false, 0);
			appendStringInfoString(&buf, desc0 ? " <= " : " >= ");
			page_append_row(&buf, info, 0, run_end - 1, true, pb);
			appendStringInfoString(&buf, " AND ");
		}
		page_append_after_general(&buf, info, reverse, nullmask, 0, pb);
	}
	return buf.data;
}

static char *
page_build_sql(PageQueryInfo *info, bool with_cursor, bool reverse,
			   const bool *nullmask, int limit)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "SELECT to_jsonb(pulse_q.*)");
	for (int i = 0; i < info->nkeys; i++)
		appendStringInfo(&buf, ", pulse_q.%s", quote_identifier(info->keys[i].name));
	appendStringInfo(&buf, "\nFROM (\n%s\n) AS pulse_q", info->stmt);
	if (with_cursor)
		appendStringInfo(&buf, "\nWHERE %s",
						 page_predicate(info, reverse, nullmask, info->nparams));
	appendStringInfo(&buf, "\nORDER BY %s\nLIMIT %d",
					 page_order_canonical(info->keys, info->nkeys, reverse), limit);
	return buf.data;
}

/* ------------------------------------------------------------------------
 * Plan inspection
 * ------------------------------------------------------------------------
 */

typedef struct PagePlanInfo
{
	bool		sort;			/* a Sort orders the rows */
	bool		incremental;	/* an Incremental Sort does */
	char	   *index;			/* index providing the order, if any */
	const char *scan;			/* node name of the scan under the limit */
} PagePlanInfo;

static const char *
page_node_name(Plan *p)
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

/*
 * Follows the plan from below the Limit along the nodes that preserve their
 * input order, and records whether a sort or an index provides the order.
 */
static void
page_inspect_plan(Plan *p, PagePlanInfo *pi)
{
	while (p != NULL)
	{
		switch (nodeTag(p))
		{
			case T_Limit:
			case T_Result:
			case T_SubqueryScan:
			case T_NestLoop:
			case T_MergeJoin:
			case T_GatherMerge:
			case T_Unique:
				if (IsA(p, SubqueryScan))
					p = ((SubqueryScan *) p)->subplan;
				else
					p = outerPlan(p);
				continue;
			case T_Sort:
				pi->sort = true;
				pi->scan = page_node_name(outerPlan(p) ? outerPlan(p) : p);
				return;
			case T_IncrementalSort:
				pi->incremental = true;
				p = outerPlan(p);
				continue;
			case T_IndexScan:
				pi->index = get_rel_name(((IndexScan *) p)->indexid);
				pi->scan = page_node_name(p);
				return;
			case T_IndexOnlyScan:
				pi->index = get_rel_name(((IndexOnlyScan *) p)->indexid);
				pi->scan = page_node_name(p);
				return;
			case T_MergeAppend:
				{
					MergeAppend *ma = (MergeAppend *) p;

					pi->scan = page_node_name(p);
					if (ma->mergeplans != NIL)
					{
						Plan	   *first = linitial(ma->mergeplans);

						if (IsA(first, IndexScan))
							pi->index = get_rel_name(((IndexScan *) first)->indexid);
						else if (IsA(first, IndexOnlyScan))
							pi->index = get_rel_name(((IndexOnlyScan *) first)->indexid);
						else if (IsA(first, Sort))
							pi->sort = true;
					}
					return;
				}
			default:
				pi->scan = page_node_name(p);
				return;
		}
	}
}

/* Inspects the generic plan of a saved SPI plan.  Caller is in SPI. */
static void
page_plan_info(SPIPlanPtr plan, PagePlanInfo *pi)
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

		page_inspect_plan(ps->planTree, pi);
	}
	ReleaseCachedPlan(cplan, CurrentResourceOwner);
}

static char *
page_suggested_index(PageQueryInfo *info)
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

/* ------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------
 */

static void
page_append_array_literal(StringInfo buf, JsonbValue *v);

/* Text form of a scalar JSON value for a type's input function. */
static char *
page_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

static void
page_append_array_elem(StringInfo buf, JsonbValue *v)
{
	if (v->type == jbvNull)
		appendStringInfoString(buf, "NULL");
	else if (v->type == jbvBinary)
		page_append_array_literal(buf, v);
	else
	{
		char	   *s = page_scalar_text(v);

		appendStringInfoChar(buf, '"');
		for (; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, *s);
		}
		appendStringInfoChar(buf, '"');
	}
}

/* Appends the PostgreSQL array literal of a JSON array (jbvBinary). */
static void
page_append_array_literal(StringInfo buf, JsonbValue *v)
{
	JsonbContainer *c = v->val.binary.data;
	uint32		n;

	if (!JsonContainerIsArray(c))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a JSON object cannot be an element of an array argument")));
	n = JsonContainerSize(c);
	appendStringInfoChar(buf, '{');
	for (uint32 i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(c, i);

		if (i > 0)
			appendStringInfoChar(buf, ',');
		page_append_array_elem(buf, e);
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Converts the args JSON array into Datums of the parameters' types.
 * JSON null is SQL NULL; a JSON array becomes an array value for an array
 * parameter; objects and arrays are passed as JSON text to json/jsonb
 * parameters.
 */
static void
page_bind_args(PageQueryInfo *info, Jsonb *args, Datum *values, char *nulls)
{
	for (int i = 0; i < info->nparams; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&args->root, i);
		Oid			typ = info->paramtypes[i];
		Oid			infunc,
					ioparam;
		char	   *text;

		if (v->type == jbvNull)
		{
			values[i] = (Datum) 0;
			nulls[i] = 'n';
			continue;
		}
		if (v->type == jbvBinary)
		{
			if (typ == JSONBOID || typ == JSONOID)
				text = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			else if (OidIsValid(get_element_type(typ)))
			{
				StringInfoData buf;

				initStringInfo(&buf);
				page_append_array_literal(&buf, v);
				text = buf.data;
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("args[%d] is a JSON %s but parameter $%d is of type %s",
								i, JsonContainerIsArray(v->val.binary.data) ? "array" : "object",
								i + 1, format_type_be(typ))));
		}
		else if (typ == JSONBOID || typ == JSONOID)
		{
			Jsonb	   *scalar = JsonbValueToJsonb(v);

			text = JsonbToCString(NULL, &scalar->root, VARSIZE(scalar));
		}
		else
			text = page_scalar_text(v);

		getTypeInputInfo(typ, &infunc, &ioparam);
		values[i] = OidInputFunctionCall(infunc, text, ioparam, -1);
		nulls[i] = ' ';
	}
}

/* ------------------------------------------------------------------------
 * The cache
 * ------------------------------------------------------------------------
 */

/*
 * Finds or prepares the plan for one variant of a page.  Caller is in SPI.
 * info is the caller's analysis when the variant is new, else the cached
 * one is returned through *info.
 */
static PageCacheEntry *
page_get_entry(const char *query, const char *order_by, int nargs,
			   bool with_cursor, bool reverse, const bool *nullmask, int limit)
{
	StringInfoData key;
	uint64		hash;
	PageCacheEntry *e;
	bool		found;
	PageQueryInfo *info;
	PageKey    *keys;
	int			nkeys;
	Oid		   *argtypes;
	char	   *sql;
	SPIPlanPtr	plan;
	MemoryContext old;
	PageCacheEntry tmp;
	CachedPlanSource *src;
	ListCell   *lc;

	initStringInfo(&key);
	appendStringInfo(&key, "%d|%d|%d|%d|", nargs, limit, with_cursor, reverse);
	if (with_cursor)
		for (int i = 0; nullmask && i < PAGE_MAX_KEYS; i++)
			appendStringInfoChar(&key, nullmask[i] ? 'N' : 'v');
	appendStringInfo(&key, "|%zu:%s|%s", strlen(order_by), order_by, query);
	hash = DatumGetUInt64(hash_any_extended((unsigned char *) key.data, key.len, 0));

	page_cache_init();
	e = hash_search(page_cache, &hash, HASH_FIND, NULL);
	if (e != NULL && strcmp(e->key, key.data) == 0 &&
		(!e->stale || page_depth > 0))
	{
		page_cache_hits++;
		return e;
	}
	page_cache_prepares++;

	/* Not cached: analyse the query and prepare this variant. */
	keys = page_parse_order(order_by, &nkeys);
	info = page_analyze(query, keys, nkeys, nargs);
	argtypes = palloc(sizeof(Oid) * (info->nparams + nkeys));
	memcpy(argtypes, info->paramtypes, sizeof(Oid) * info->nparams);
	memcpy(argtypes + info->nparams, info->keytypes, sizeof(Oid) * nkeys);
	sql = page_build_sql(info, with_cursor, reverse, nullmask, limit);
	plan = SPI_prepare(sql, with_cursor ? info->nparams + nkeys : info->nparams, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for pulse.page: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");

	/* a full cache starts over, unless an outer page still uses it */
	page_cache_init();
	if (hash_get_num_entries(page_cache) >= PAGE_CACHE_MAX && page_depth == 0)
	{
		page_cache_drop();
		page_cache_init();
	}

	/*
	 * Build the entry's contents in a context of its own first, so that an
	 * error leaves no half-made entry in the table.
	 */
	memset(&tmp, 0, sizeof(tmp));
	tmp.cxt = AllocSetContextCreate(page_cache_cxt, "pulse page cache entry",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp.cxt);
	tmp.key = pstrdup(key.data);
	tmp.sql = pstrdup(sql);
	tmp.sort_state = -1;
	tmp.info = palloc0(sizeof(PageQueryInfo));
	*tmp.info = *info;
	tmp.info->stmt = pstrdup(info->stmt);
	tmp.info->order_canon = pstrdup(info->order_canon);
	tmp.info->paramtypes = palloc(sizeof(Oid) * Max(info->nparams, 1));
	memcpy(tmp.info->paramtypes, info->paramtypes, sizeof(Oid) * info->nparams);
	tmp.info->keys = palloc(sizeof(PageKey) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		tmp.info->keys[i] = info->keys[i];
		tmp.info->keys[i].name = pstrdup(info->keys[i].name);
	}
	tmp.info->keytypes = palloc(sizeof(Oid) * nkeys);
	memcpy(tmp.info->keytypes, info->keytypes, sizeof(Oid) * nkeys);
	tmp.info->keynotnull = palloc(sizeof(bool) * nkeys);
	memcpy(tmp.info->keynotnull, info->keynotnull, sizeof(bool) * nkeys);
	tmp.info->eq_columns = NIL;
	foreach(lc, info->eq_columns)
		tmp.info->eq_columns = lappend(tmp.info->eq_columns, pstrdup(lfirst(lc)));
	src = linitial(SPI_plan_get_plan_sources(plan));
	tmp.relids = palloc(sizeof(Oid) * Max(list_length(src->relationOids), 1));
	foreach(lc, src->relationOids)
		tmp.relids[tmp.nrelids++] = lfirst_oid(lc);
	MemoryContextSwitchTo(old);

	e = hash_search(page_cache, &hash, HASH_ENTER, &found);
	if (found)
	{
		SPI_freeplan(e->plan);
		MemoryContextDelete(e->cxt);
	}
	tmp.hash = hash;
	tmp.plan = plan;
	*e = tmp;
	return e;
}

/* ------------------------------------------------------------------------
 * SQL-callable functions
 * ------------------------------------------------------------------------
 */

static Jsonb *
page_check_args(Jsonb *args)
{
	if (args == NULL)
		return NULL;
	if (!JB_ROOT_IS_ARRAY(args) || JB_ROOT_IS_SCALAR(args))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("args must be a JSON array")));
	if (JB_ROOT_COUNT(args) > PAGE_MAX_ARGS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("args has %d elements, more than the %d allowed",
						(int) JB_ROOT_COUNT(args), PAGE_MAX_ARGS)));
	return args;
}

static void
page_require_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

static void
page_push_key(JsonbParseState **st, const char *k)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) k;
	v.val.string.len = strlen(k);
	pushJsonbValue(st, WJB_KEY, &v);
}

static void
page_push_text_or_null(JsonbParseState **st, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* The binding a page's cursors carry. */
static void
page_binding(PageQueryInfo *info, Jsonb *args, uint8 binding[8])
{
	char	   *args_text = JsonbToCString(NULL, &args->root, VARSIZE(args));

	pulse_cursor_binding(info->fingerprint, info->order_canon, args_text,
						 pulse_tenant ? pulse_tenant : "", binding);
}

/*
 * A key value's bytes in a cursor: the type's binary send form, which means
 * the same whatever DateStyle, TimeZone or extra_float_digits the session
 * has; the text form for the rare type that has no binary I/O.
 */
static void
page_key_to_bytes(Oid type, Datum d, PulseCursorKey *key)
{
	HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	Oid			sendfn;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for type %u", type);
	sendfn = ((Form_pg_type) GETSTRUCT(tp))->typsend;
	ReleaseSysCache(tp);
	if (OidIsValid(sendfn))
	{
		bytea	   *b = OidSendFunctionCall(sendfn, d);

		key->len = VARSIZE(b) - VARHDRSZ;
		key->text = VARDATA(b);
	}
	else
	{
		Oid			outfn;
		bool		varlena;

		getTypeOutputInfo(type, &outfn, &varlena);
		key->text = OidOutputFunctionCall(outfn, d);
		key->len = strlen(key->text);
	}
}

/* The inverse of page_key_to_bytes, for a signed (trusted) cursor. */
static Datum
page_key_from_bytes(Oid type, PulseCursorKey *key)
{
	HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	Oid			recvfn;
	Oid			ioparam;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for type %u", type);
	recvfn = ((Form_pg_type) GETSTRUCT(tp))->typreceive;
	ReleaseSysCache(tp);
	if (OidIsValid(recvfn))
	{
		StringInfoData buf;

		getTypeBinaryInputInfo(type, &recvfn, &ioparam);
		buf.data = key->text;
		buf.len = key->len;
		buf.maxlen = key->len + 1;	/* the decoder NUL-terminates */
		buf.cursor = 0;
		return OidReceiveFunctionCall(recvfn, &buf, ioparam, -1);
	}
	else
	{
		Oid			infn;

		getTypeInputInfo(type, &infn, &ioparam);
		return OidInputFunctionCall(infn, pnstrdup(key->text, key->len), ioparam, -1);
	}
}

/* Encodes a cursor from the key columns (2..n+1) of an SPI result row. */
static char *
page_make_cursor(PageQueryInfo *info, const uint8 binding[8], bool backward,
				 HeapTuple tup, TupleDesc desc)
{
	PulseCursorKey *keys = palloc0(sizeof(PulseCursorKey) * info->nkeys);

	for (int i = 0; i < info->nkeys; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, i + 2, &isnull);

		keys[i].isnull = isnull;
		if (!isnull)
		{
			page_key_to_bytes(info->keytypes[i], d, &keys[i]);
		}
	}
	return pulse_cursor_encode(binding, backward, info->nkeys, keys);
}

/*
 * pulse.page(query text, order_by text, cursor text DEFAULT NULL,
 *			  page_size int DEFAULT 50, args jsonb DEFAULT '[]') RETURNS jsonb
 */
Datum
pulse_page(PG_FUNCTION_ARGS)
{
	char	   *query;
	char	   *order_by;
	char	   *cursor_text = NULL;
	int32		page_size;
	Jsonb	   *args;
	int			nargs;
	PageCacheEntry *e;
	PageQueryInfo *info;
	PulseCursor cur;
	bool		backward = false;
	bool		nullmask[PAGE_MAX_KEYS];
	uint8		binding[8];
	Datum	   *values;
	char	   *nulls;
	int			ret;
	uint64		nrows;
	int			nitems;
	bool		more;
	JsonbParseState *st = NULL;
	JsonbValue *res;
	char	   *next_cursor = NULL;
	char	   *prev_cursor = NULL;
	SPITupleTable *tt;
	Jsonb	   *result;
	MemoryContext callcxt = CurrentMemoryContext;

	page_require_arg(fcinfo, 0, "query");
	page_require_arg(fcinfo, 1, "order_by");
	page_require_arg(fcinfo, 3, "page_size");
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	order_by = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		cursor_text = text_to_cstring(PG_GETARG_TEXT_PP(2));
	page_size = PG_GETARG_INT32(3);
	args = PG_ARGISNULL(4) ? NULL : page_check_args(PG_GETARG_JSONB_P(4));
	if (args == NULL)
		args = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("[]")));
	nargs = JB_ROOT_COUNT(args);

	if (page_size < 1 || page_size > PAGE_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("page_size must be between 1 and %d, not %d",
						PAGE_MAX_SIZE, page_size)));

	memset(nullmask, 0, sizeof(nullmask));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* The first variant tells the keys; the cursor then picks the variant. */
	e = page_get_entry(query, order_by, nargs, false, false, NULL, page_size + 1);
	info = e->info;
	page_binding(info, args, binding);

	values = palloc(sizeof(Datum) * (info->nparams + info->nkeys));
	nulls = palloc(sizeof(char) * (info->nparams + info->nkeys + 1));
	page_bind_args(info, args, values, nulls);

	if (cursor_text != NULL)
	{
		pulse_cursor_decode(cursor_text, binding, info->nkeys, &cur);
		backward = cur.backward;
		for (int i = 0; i < info->nkeys; i++)
		{
			int			p = info->nparams + i;

			nullmask[i] = cur.keys[i].isnull;
			if (cur.keys[i].isnull)
			{
				values[p] = (Datum) 0;
				nulls[p] = 'n';
			}
			else
			{
				values[p] = page_key_from_bytes(info->keytypes[i], &cur.keys[i]);
				nulls[p] = ' ';
			}
		}
		e = page_get_entry(query, order_by, nargs, true, backward, nullmask,
						   page_size + 1);
		info = e->info;
	}

	if (pulse_require_index_for_page)
	{
		if (e->sort_state < 0)
		{
			PagePlanInfo pi;

			page_plan_info(e->plan, &pi);
			e->sort_state = pi.sort ? 1 : 0;
		}
		if (e->sort_state == 1)
		{
			char	   *idx = page_suggested_index(info);

			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no index serves the order of this page"),
					 errdetail("The plan sorts the rows of a scan, so the cost of a page grows with the table."),
					 idx ? errhint("Create an index matching the order: %s", idx)
					 : errhint("Create an index on the sort keys, in this order and direction.")));
		}
	}

	/* the plan must outlive any nested pulse.page call the query makes */
	page_depth++;
	PG_TRY();
	{
		ret = SPI_execute_plan(e->plan, values, nulls, false, page_size + 1);
	}
	PG_FINALLY();
	{
		page_depth--;
	}
	PG_END_TRY();
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pulse.page query failed: %s", SPI_result_code_string(ret));
	nrows = SPI_processed;
	tt = SPI_tuptable;
	more = nrows > (uint64) page_size;
	nitems = more ? page_size : (int) nrows;

	/* Cursors and the result are built in the caller's memory context. */
	{
		MemoryContext spicxt = MemoryContextSwitchTo(callcxt);
		int			first_row,
					last_row;
		JsonbValue	v;

		/* rows come reversed for a backward page */
		first_row = backward ? nitems - 1 : 0;
		last_row = backward ? 0 : nitems - 1;

		if (nitems > 0)
		{
			if (backward)
			{
				next_cursor = page_make_cursor(info, binding, false, tt->vals[last_row], tt->tupdesc);
				if (more)
					prev_cursor = page_make_cursor(info, binding, true, tt->vals[first_row], tt->tupdesc);
			}
			else
			{
				if (more)
					next_cursor = page_make_cursor(info, binding, false, tt->vals[last_row], tt->tupdesc);
				if (cursor_text != NULL)
					prev_cursor = page_make_cursor(info, binding, true, tt->vals[first_row], tt->tupdesc);
			}
		}

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		page_push_key(&st, "items");
		pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
		for (int n = 0; n < nitems; n++)
		{
			int			r = backward ? nitems - 1 - n : n;
			bool		isnull;
			Datum		d = SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull);
			Jsonb	   *row = DatumGetJsonbP(d);

			v.type = jbvBinary;
			v.val.binary.data = &row->root;
			v.val.binary.len = VARSIZE(row) - VARHDRSZ;
			pushJsonbValue(&st, WJB_ELEM, &v);
		}
		pushJsonbValue(&st, WJB_END_ARRAY, NULL);
		page_push_key(&st, "next_cursor");
		page_push_text_or_null(&st, next_cursor);
		page_push_key(&st, "prev_cursor");
		page_push_text_or_null(&st, prev_cursor);
		res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
		result = JsonbValueToJsonb(res);
		MemoryContextSwitchTo(spicxt);
	}

	SPI_finish();
	PG_RETURN_JSONB_P(result);
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
	PagePlanInfo pi;
	bool		nullmask[PAGE_MAX_KEYS];
	JsonbParseState *st = NULL;
	JsonbValue	v;
	JsonbValue *res;
	Jsonb	   *result;
	char	   *suggestion = NULL;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext spicxt;

	page_require_arg(fcinfo, 0, "query");
	page_require_arg(fcinfo, 1, "order_by");
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	order_by = text_to_cstring(PG_GETARG_TEXT_PP(1));
	args = PG_ARGISNULL(2) ? NULL : page_check_args(PG_GETARG_JSONB_P(2));

	memset(nullmask, 0, sizeof(nullmask));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	e = page_get_entry(query, order_by, args ? JB_ROOT_COUNT(args) : 0,
					   true, false, nullmask, 51);
	info = e->info;
	page_plan_info(e->plan, &pi);
	if (pi.sort)
		suggestion = page_suggested_index(info);

	spicxt = MemoryContextSwitchTo(callcxt);
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);

	page_push_key(&st, "index_serves_order");
	v.type = jbvBool;
	v.val.boolean = !pi.sort && pi.index != NULL;
	pushJsonbValue(&st, WJB_VALUE, &v);

	page_push_key(&st, "index");
	page_push_text_or_null(&st, pi.index);

	page_push_key(&st, "sort_needed");
	v.type = jbvBool;
	v.val.boolean = pi.sort;
	pushJsonbValue(&st, WJB_VALUE, &v);

	page_push_key(&st, "incremental_sort");
	v.type = jbvBool;
	v.val.boolean = pi.incremental;
	pushJsonbValue(&st, WJB_VALUE, &v);

	page_push_key(&st, "scan");
	page_push_text_or_null(&st, pi.scan);

	page_push_key(&st, "suggested_index");
	page_push_text_or_null(&st, suggestion);

	page_push_key(&st, "nullable_keys");
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

	page_push_key(&st, "fingerprint");
	page_push_text_or_null(&st, info->fingerprint);

	page_push_key(&st, "sql");
	page_push_text_or_null(&st, e->sql);

	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	result = JsonbValueToJsonb(res);
	MemoryContextSwitchTo(spicxt);

	SPI_finish();
	PG_RETURN_JSONB_P(result);
}

/*
 * pulse.page_cache_stats() RETURNS (entries int, hits bigint, prepares bigint)
 *
 * This backend's cache of prepared page plans, to check that plans are
 * prepared once and reused.
 */
Datum
pulse_page_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	values[0] = Int32GetDatum(page_cache ? (int32) hash_get_num_entries(page_cache) : 0);
	values[1] = Int64GetDatum((int64) page_cache_hits);
	values[2] = Int64GetDatum((int64) page_cache_prepares);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
