/*-------------------------------------------------------------------------
 *
 * aggregate_delta.c
 *		Delta maintenance of the materialized aggregates: loading the delta
 *		plan of an aggregate, consuming its logged per-group deltas and
 *		applying them to its table.
 *
 * A refresh sums the logged deltas per group and computes the new rows from
 * the table's current ones: counts and sums add up (a sum is NULL when its
 * count is 0), avg = sum / count (numeric division, as avg does: the same
 * type and scale as the query's), min = least(old, inserted),
 * max = greatest(old, inserted), and a group whose count(*) falls to 0 is
 * deleted.  A group is recomputed from the source (aggregate_apply.c) only
 * when
 *	- a deleted value is at or beyond its new min or max (the extreme may
 *	  have gone);
 *	- a NaN or an infinity was inserted into or deleted from a numeric sum:
 *	  they do not subtract (NaN - NaN is NaN, Infinity - Infinity is NaN),
 *	  so the log sums the finite values only and counts the others (as
 *	  numeric's own sum keeps NaN and infinity counts apart).  A finite
 *	  change to a group whose sum is NaN or infinite keeps it so, as it
 *	  should;
 *	- a numeric sum without typmod lost a term of its largest scale: the
 *	  scale of a numeric sum is the largest of its terms' (sum of 1.5 and
 *	  2.25 is 3.75; once 2.25 is gone, 1.5, not 1.50), so the log keeps the
 *	  largest scale of the inserted and of the deleted values, and the
 *	  group is recomputed when a deleted one is at or above the larger of
 *	  the current sum's scale and the inserted ones' (a column with a
 *	  typmod has one scale: nothing to follow).
 * No source row is read otherwise, and every value is equal to the query's
 * in its text too.  float sums and averages are not maintained by deltas
 * (aggregate_analyze.c).  A refresh analyses the query again: when a NOT
 * NULL constraint it relied on has been dropped, or the plan now needs a log
 * column the log lacks (a log made by pulse 1.1, a typmod dropped), it
 * recomputes the touched groups instead (the log holds their keys too).
 *
 * Locking: deltas must be applied exactly once each.  The caller
 * (agg_refresh) holds the definition's row lock and runs every statement
 * with one snapshot (agg_snapshot): the log rows consumed are those of the
 * transactions whose source rows that snapshot sees.  The re-analysis locks
 * the source (AccessShareLock) until the end of the transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "aggregate_int.h"

/*
 * The delta maintenance of incremental aggregate def for this refresh, or
 * NULL when its touched groups are to be recomputed: its log was created
 * without deltas (or without a delta column the plan needs now), or the
 * query no longer qualifies (a NOT NULL constraint it relied on was
 * dropped).  Analyses the query again as the table's owner
 * with its search_path; the analysis locks the source table until the end
 * of the transaction, so its constraints cannot change under the refresh.
 */
AggDelta *
agg_delta_load(AggDef *def)
{
	Oid			logrel = get_relname_relid(psprintf("aggregate_%d_log", def->id),
										   get_namespace_oid("pulse", false));
	PulseAsUser as_owner;
	List	   *raw;
	Query	   *q;
	AggShape	shape;
	AggDelta   *delta = NULL;
	const char *why;

	if (!OidIsValid(logrel) ||
		get_attnum(logrel, "__pulse_n") == InvalidAttrNumber)
		return NULL;

	agg_become_owner(def, &as_owner);
	raw = raw_parser(def->query, RAW_PARSE_DEFAULT);
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), def->query,
								  NULL, 0, NULL);
	memset(&shape, 0, sizeof(shape));
	if (agg_incremental_blocker(q, &shape) == NULL)
		delta = agg_delta_plan(q, shape.source, &why);
	agg_restore_user(&as_owner);

	if (delta != NULL && delta->nvalues != list_length(def->values))
		elog(ERROR, "aggregate %d: its query has %d values, its table %d",
			 def->id, delta->nvalues, list_length(def->values));

	/*
	 * The capture function logs what the plan of the aggregate's creation
	 * asked for: a log without a column the plan needs now (it was created
	 * by pulse 1.1, or a typmod has been dropped since) serves by its keys.
	 */
	if (delta != NULL)
	{
		ListCell   *lc;

		foreach(lc, agg_log_columns(delta))
			if (get_attnum(logrel, ((AggLogColumn *) lfirst(lc))->name) == InvalidAttrNumber)
				return NULL;
	}
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
bool
agg_consume_delta(AggDef *def, AggDelta *delta, SPITupleTable **tt,
				  uint64 *ntuples)
{
	StringInfoData sql;
	char	   *keys = agg_column_list(def->keys, "c.");
	ListCell   *lc;
	bool		isnull;

	initStringInfo(&sql);
	appendStringInfo(&sql, "WITH c AS (DELETE FROM %s RETURNING *) SELECT %s",
					 agg_pulse_object(def->id, "log"), keys);
	foreach(lc, agg_log_columns(delta))
	{
		AggLogColumn *col = lfirst(lc);

		appendStringInfo(&sql, ", %s(c.%s)", col->combine, col->name);
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
				/* a NaN or an infinity came or went: it does not subtract */
				if (v->nonfinite)
					appendStringInfo(&recompute,
									 " OR coalesce(d.__pulse_x_%d, 0) > 0", i + 1);
				/* a term of the largest scale may have gone (see header) */
				if (v->track_scale)
					appendStringInfo(&recompute,
									 " OR coalesce(d.__pulse_t_%d >= greatest(pg_catalog.scale(a.%s), d.__pulse_s_%d), false)",
									 i + 1, col, i + 1);
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
 * The keys of the rows of rt (nrows rows: __pulse_ctid, __pulse_f, the
 * nkeys keys, ...) whose column flagcol (1-based) is true, as
 * agg_consume_keys gives the keys of the log: keys->nlogged is their number.
 */
static void
agg_flagged_keys(SPITupleTable *rt, uint64 nrows, int nkeys, int flagcol,
				 AggKeys *keys)
{
	memset(keys, 0, sizeof(AggKeys));
	keys->nkeys = nkeys;
	keys->arrays = palloc0(sizeof(Datum) * nkeys);
	keys->array_null = palloc0(sizeof(bool) * nkeys);
	keys->has_null = palloc0(sizeof(bool) * nkeys);
	keys->array_types = palloc0(sizeof(Oid) * nkeys);
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
			Datum		flag = SPI_getbinval(rt->vals[r], rt->tupdesc, flagcol, &isnull);
			Datum		key;

			if (isnull || !DatumGetBool(flag))
				continue;
			if (k == 0)
				keys->nlogged++;
			key = SPI_getbinval(rt->vals[r], rt->tupdesc, 3 + k, &isnull);
			if (isnull)
				keys->has_null[k] = true;
			else
				elems[n++] = key;
		}
		get_typlenbyvalalign(typid, &typlen, &typbyval, &typalign);
		keys->array_types[k] = get_array_type(typid);
		keys->array_null[k] = (n == 0);
		if (n > 0)
			keys->arrays[k] = PointerGetDatum(construct_array(elems, n, typid, typlen,
															  typbyval, typalign));
	}
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
int64
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
	StringInfoData cols;
	bool		null_keys = false;
	AggKeyJoin	kj;
	ListCell   *lc;
	char	   *sel;
	char	   *from_a;
	Relation	rel;
	PulseAsUser as_owner;
	SPITupleTable *rt;
	uint64		nrows;
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
	foreach(lc, agg_log_columns(delta))
		appendStringInfo(&cols, ", %s", ((AggLogColumn *) lfirst(lc))->name);
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
	agg_key_join(def, RelationGetDescr(rel), "d", "a", &kj);
	relation_close(rel, AccessShareLock);
	from_a = psprintf("(SELECT a.ctid AS __pulse_ctid, a.* FROM %s a", name);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "WITH d AS MATERIALIZED (SELECT * FROM unnest(");
	for (int c = 1; c <= nin; c++)
		appendStringInfo(&sql, "%s$%d", c > 1 ? ", " : "", c);
	appendStringInfo(&sql, ") AS d(%s)) ", cols.data);
	if (!kj.hashable)
		appendStringInfo(&sql, "%s FROM d LEFT JOIN %s) a ON %s", sel, from_a, kj.receq);
	else
	{
		/* one probe of the unique index per group, not a scan of the table */
		appendStringInfo(&sql, "%s FROM (SELECT * FROM d WHERE %s) d "
						 "LEFT JOIN LATERAL %s WHERE %s OFFSET 0) a ON true",
						 sel, kj.notnull, from_a, kj.eq);
		if (null_keys)
			appendStringInfo(&sql, " UNION ALL %s FROM (SELECT * FROM d WHERE NOT (%s)) d "
							 "LEFT JOIN %s WHERE NOT (%s)) a ON %s",
							 sel, kj.notnull, from_a, kj.notnull, kj.receq);
	}

	agg_become_owner(def, &as_owner);

	nrows = agg_exec(sql.data, nin, argtypes, args, NULL);
	rt = SPI_tuptable;
	for (int c = 0; c < ncols; c++)
		coltypes[c] = SPI_gettypeid(rt->tupdesc, 3 + c);
	rows = agg_apply_rows(def, name, rt, nrows, coltypes, 3 + ncols);

	agg_restore_user(&as_owner);

	agg_flagged_keys(rt, nrows, nkeys, 3 + ncols, &keys);
	if (keys.nlogged > 0)
		rows += agg_apply(def, name, &keys);
	return rows;
}
