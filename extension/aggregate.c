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
 *	- The log is consumed by a DELETE in the refresh's own transaction,
 *	  before the groups are recomputed from a later snapshot.  So a log row
 *	  disappears only with the commit of a refresh that saw its change, and
 *	  a crash or an error anywhere leaves both the table and the log as they
 *	  were.  A change that commits while a refresh runs keeps its log row and
 *	  is applied (again) by the next refresh.
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
static uint64
agg_exec(const char *sql, int nargs, Oid *argtypes, Datum *values,
		 const char *nulls)
{
	int			rc;

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
 * as an array of elemtype.
 */
static Datum
agg_diff_column(SPITupleTable *tt, uint64 ntuples, int c, bool upserts,
				Oid elemtype, int *nitems)
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
	HeapTuple	classtup;
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

	classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(def->relid));
	if (!HeapTupleIsValid(classtup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of aggregate %d no longer exists", def->id)));
	owner = ((Form_pg_class) GETSTRUCT(classtup))->relowner;
	ReleaseSysCache(classtup);

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
		uint64		ntuples = SPI_processed;
		Oid		   *argtypes = palloc(sizeof(Oid) * (ncols + 1));
		Datum	   *args = palloc(sizeof(Datum) * (ncols + 1));
		int			n;
		StringInfoData sql;

		rows = 0;
		args[0] = agg_diff_column(tt, ntuples, -1, false, TIDOID, &n);
		if (n > 0)
		{
			argtypes[0] = get_array_type(TIDOID);
			rows += agg_exec(psprintf("DELETE FROM %s WHERE ctid = ANY($1)", name),
							 1, argtypes, args, NULL);
		}
		for (int c = 0; c < ncols; c++)
		{
			args[c] = agg_diff_column(tt, ntuples, c, true, coltypes[c], &n);
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

	def = agg_load(run->id, lock);
	if (def == NULL)
		return false;
	name = agg_rel_name(def->relid);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of aggregate %d no longer exists", def->id)));

	run->full = force_full || !def->incremental;
	if (run->full)
		agg_consume_all(def);
	else if (!agg_consume_keys(def, &keys))
		run->full = true;

	if (run->full)
		run->rows = agg_apply(def, name, NULL);
	else if (keys.nlogged > 0)
		run->rows = agg_apply(def, name, &keys);
	else
		run->rows = 0;

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

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
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

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
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

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
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

	if (shape->incremental)
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
