/*-------------------------------------------------------------------------
 *
 * aggregate_common.c
 *		Helpers of the materialized aggregates that know nothing of
 *		aggregates: statements through SPI (under the snapshot of the
 *		refresh under way), quoted names and lists, text arrays, operators,
 *		the owner of an aggregate's table and the refresh work_mem.
 *
 * Locking: none taken here.  agg_snapshot is per backend; agg_refresh
 * (aggregate_refresh.c) sets it for the duration of one refresh and resets
 * it on every exit, error included.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "aggregate_int.h"
#include "guc_vars.h"

/*
 * The snapshot of the refresh under way, or NULL: while it is set, agg_exec
 * runs every statement with it (its command id advanced before each one),
 * so that the log rows a refresh consumes and the source rows it reads are
 * those of the same committed transactions.  Set and reset by agg_refresh.
 */
Snapshot agg_snapshot = NULL;

/*
 * Runs sql through SPI with parameters; caller is connected to SPI.
 * Returns SPI_processed.  SQL errors are thrown by SPI itself.
 */
uint64
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
uint64
agg_exec0(const char *sql)
{
	return agg_exec(sql, 0, NULL, NULL, NULL);
}

/* Schema-qualified, quoted name of a relation (NULL if it is gone). */
char *
agg_rel_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  relname);
}

/* The quoted name of an object of aggregate id in schema pulse. */
char *
agg_pulse_object(int32 id, const char *suffix)
{
	return psprintf("pulse.aggregate_%d_%s", id, suffix);
}

/* Comma-separated list of the quoted names, each preceded by prefix. */
char *
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

/* A text[] of the strings of names. */
Datum
agg_list_to_text_array(List *names)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	ListCell   *lc;

	foreach(lc, names)
		elems[foreach_current_index(lc)] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, list_length(names), TEXTOID,
										   -1, false, TYPALIGN_INT));
}

/* The strings of a text[] without NULLs, as a List of char *. */
List *
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

/* "OPERATOR(schema.name)" designating operator opno whatever the search_path. */
char *
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
 * Sets work_mem to pulse.refresh_work_mem until the caller's
 * AtEOXact_GUC(false, nestlevel).
 */
void
agg_set_work_mem(void)
{
	if (pulse_refresh_work_mem > 0)
		(void) set_config_option("work_mem",
								 psprintf("%d", pulse_refresh_work_mem),
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

/* The owner of aggregate def's table (an error if the table is gone). */
Oid
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
 * Acts as the owner of aggregate def's table, with the search_path of the
 * aggregate's creation and work_mem = pulse.refresh_work_mem, as a
 * security-restricted operation (as REFRESH MATERIALIZED VIEW runs its
 * query), until agg_restore_user(st).  An error in between is cleaned up by
 * the (sub)transaction's abort.
 */
void
agg_become_owner(AggDef *def, PulseAsUser *st)
{
	Oid			owner = agg_owner(def);

	GetUserIdAndSecContext(&st->save_userid, &st->save_sec_context);
	SetUserIdAndSecContext(owner, st->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	st->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", def->search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	agg_set_work_mem();
}

/* Back to the user and settings agg_become_owner saved in st. */
void
agg_restore_user(PulseAsUser *st)
{
	AtEOXact_GUC(false, st->save_nestlevel);
	SetUserIdAndSecContext(st->save_userid, st->save_sec_context);
}

/*
 * How to join rows (alias l) to the rows of the aggregate table (alias r,
 * whose descriptor is reldesc) on the keys of def: kj->notnull, "k1 IS NOT
 * NULL AND ..." (unqualified); kj->eq, "l.k1 = r.k1 AND ..." with each key
 * type's default equality spelled out (search_path-proof), valid when
 * kj->hashable (every equality can be hashed); kj->receq, the record
 * equality of all keys, which matches NULL keys as the unique index does.
 */
void
agg_key_join(AggDef *def, TupleDesc reldesc, const char *l, const char *r,
			 AggKeyJoin *kj)
{
	StringInfoData notnull;
	StringInfoData eq;
	ListCell   *lc;

	initStringInfo(&notnull);
	initStringInfo(&eq);
	kj->hashable = true;
	foreach(lc, def->keys)
	{
		const char *k = quote_identifier((char *) lfirst(lc));
		const char *sep = foreach_current_index(lc) > 0 ? " AND " : "";
		int			attno = SPI_fnumber(reldesc, (char *) lfirst(lc));
		Oid			typid = attno > 0 ? TupleDescAttr(reldesc, attno - 1)->atttypid : InvalidOid;
		Oid			eqop = OidIsValid(typid) ?
			lookup_type_cache(typid, TYPECACHE_EQ_OPR)->eq_opr : InvalidOid;

		appendStringInfo(&notnull, "%s%s IS NOT NULL", sep, k);
		if (!OidIsValid(eqop) || !op_hashjoinable(eqop, typid))
			kj->hashable = false;
		else
			appendStringInfo(&eq, "%s%s.%s %s %s.%s", sep, l, k,
							 agg_operator(eqop), r, k);
	}
	kj->notnull = notnull.data;
	kj->eq = eq.data;
	kj->receq = psprintf("ROW(%s)::record = ROW(%s)::record",
						 agg_column_list(def->keys, psprintf("%s.", l)),
						 agg_column_list(def->keys, psprintf("%s.", r)));
}
