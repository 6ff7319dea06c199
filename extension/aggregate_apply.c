/*-------------------------------------------------------------------------
 *
 * aggregate_apply.c
 *		Recomputing groups of a materialized aggregate and applying the
 *		difference to its table, set-based.
 *
 * agg_apply runs the aggregate's query for all groups (a full refresh) or
 * for the changed keys only (an incremental one): one SELECT joins the
 * fresh groups to the table's rows on the keys and keeps the new, vanished
 * and changed groups only (changed in their bytes, so that a value equal to
 * the old one but printed differently, numeric 1.5 for 1.50, is rewritten);
 * it may run in parallel, which a data-modifying statement never does.  Then one DELETE (vanished groups) and one
 * INSERT ... ON CONFLICT (new and changed groups) write just those rows;
 * unchanged groups are not written.  A difference too large to hold in
 * memory is applied by a single streaming statement instead.
 *
 * Locking: the table is changed with plain DELETE and INSERT ... ON
 * CONFLICT only (RowExclusiveLock), so readers never wait.  Nothing but
 * refreshes writes the table and the caller holds the definition's row
 * lock (one refresh at a time), so the ctids read by the first statement
 * still designate the rows the second deletes.  The query runs as the
 * table's owner with the creation-time search_path, as a security-restricted
 * operation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "aggregate_int.h"

/*
 * Up to this many changed rows, a refresh holds its difference in memory and
 * applies it with two statements; above, with one streaming statement (see
 * agg_apply).  Overridable at build time to test the streaming path.
 */
#ifndef AGG_MAX_DIFF_ROWS
#define AGG_MAX_DIFF_ROWS			100000
#endif

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

/*
 * One branch of agg_diff_query: the FULL JOIN of the fresh groups (CTE f)
 * and the table's rows that pass rowfilter (on both sides, none if NULL),
 * on joincond, keeping the rows to change.
 */
static void
agg_append_diff_branch(StringInfo sql, AggDef *def, AggKeys *keys,
					   const char *name, const char *rowfilter,
					   const char *joincond)
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

	/*
	 * A changed group: its values differ in their bytes (record image
	 * equality, as REFRESH MATERIALIZED VIEW CONCURRENTLY compares), so
	 * that equal values that print differently (numeric 1.5 and 1.50,
	 * float 0 and -0) are rewritten too, and types without an equality
	 * compare as well.
	 */
	if (def->values != NIL)
		appendStringInfo(sql, " OR NOT (ROW(%s)::record *= ROW(%s)::record)",
						 agg_column_list(def->values, "a."),
						 agg_column_list(def->values, "f."));
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
	AggKeyJoin	kj;
	bool		null_keys = (keys == NULL);

	agg_key_join(def, reldesc, "f", "a", &kj);
	for (int i = 0; keys != NULL && i < keys->nkeys; i++)
		if (keys->has_null[i])
			null_keys = true;

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
	if (!kj.hashable)
		agg_append_diff_branch(&sql, def, keys, name, NULL, kj.receq);
	else
	{
		agg_append_diff_branch(&sql, def, keys, name, kj.notnull,
							   kj.eq);
		/* keys is NULL, or NULL keys were logged: the groups with NULL keys */
		if (null_keys)
		{
			appendStringInfoString(&sql, " UNION ALL ");
			agg_append_diff_branch(&sql, def, keys, name,
								   psprintf("NOT (%s)", kj.notnull), kj.receq);
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
int64
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
int64
agg_apply(AggDef *def, const char *name, AggKeys *keys)
{
	PulseAsUser as_owner;
	Relation	rel;
	TupleDesc	reldesc;
	char	   *diff;
	int			ncols = list_length(def->keys) + list_length(def->values);
	Oid		   *coltypes = palloc(sizeof(Oid) * (ncols + 1));
	bool		in_memory = true;
	char	   *nulls = NULL;
	int64		rows;

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

	agg_become_owner(def, &as_owner);

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

	agg_restore_user(&as_owner);
	return rows;
}
