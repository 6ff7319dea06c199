/*-------------------------------------------------------------------------
 *
 * aggregate_capture.c
 *		Change capture of the materialized aggregates: the log table
 *		pulse.aggregate_N_log, the trigger function
 *		pulse.aggregate_N_capture() and the AFTER ... FOR EACH STATEMENT
 *		triggers on the source tables, with transition tables, that call it.
 *
 * What a statement logs depends on the mode (aggregate_analyze.c):
 *	- delta maintenance: per group touched, the change of count(*), of each
 *	  count(x) and of each sum(x) (as numeric), the min or max of the
 *	  inserted values of each min(x) or max(x), and the min or max of the
 *	  deleted values (an UPDATE logs its old rows as deletions and its new
 *	  rows as insertions, summed up per group in one log row);
 *	- other incremental queries: the distinct keys of the rows inserted,
 *	  deleted or updated (old and new keys);
 *	- tracked full mode: one row per writing statement;
 * and a TRUNCATE logs a row that makes the next refresh full.
 *
 * Locking: writers only ever INSERT into the log, so writers never wait for
 * each other or for a refresh; source rows and their log rows commit
 * together.  The trigger function is SECURITY DEFINER (its owner may write
 * the log) with search_path pinned to pg_catalog, pg_temp.  CREATE TRIGGER
 * takes ShareRowExclusiveLock on each source until the caller commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "aggregate_int.h"

static AggLogColumn *
agg_log_column(char *name, char *type_expr, char *new_row, char *old_row,
			   const char *combine)
{
	AggLogColumn *c = palloc(sizeof(AggLogColumn));

	c->name = name;
	c->type_expr = type_expr;
	c->new_row = new_row;
	c->old_row = old_row;
	c->combine = combine;
	return c;
}

/*
 * The columns of the log of a delta-maintained aggregate (d), after its
 * keys, as a List of AggLogColumn: __pulse_n, the change of count(*);
 * __pulse_d_N for the value N, the change of count(x) or sum(x) (as
 * numeric; of numeric x, the sum of its finite values only), or the min or
 * max of the inserted x; __pulse_e_N, the min or max of the deleted x; for
 * sum(x) of numeric, __pulse_x_N, the number of NaN and +-Infinity inserted
 * or deleted (they do not add up: NaN - NaN is NaN, Infinity - Infinity
 * NaN), and when x has no typmod __pulse_s_N and __pulse_t_N, the largest
 * scale of the inserted and of the deleted x (the scale of a numeric sum is
 * the largest of its terms').  The one description of the log: the capture
 * function writes it, a refresh (aggregate_delta.c) reads it.
 */
List *
agg_log_columns(AggDelta *d)
{
	List	   *cols = list_make1(agg_log_column("__pulse_n", "0::bigint",
												 "1", "-1", "sum"));

	for (int i = 0; i < d->nvalues; i++)
	{
		AggDeltaValue *v = &d->v[i];
		const char *x = v->arg ? quote_identifier(v->arg) : NULL;
		char	   *dname = psprintf("__pulse_d_%d", i + 1);
		/* CASE WHEN false THEN x END: a NULL of x's type */
		char	   *nothing = x ? psprintf("CASE WHEN false THEN %s END", x) : NULL;
		const char *extreme = v->kind == AGG_DK_MIN ? "min" : "max";
		char	   *nonfin = x ? psprintf("%s IN ('NaN', 'Infinity', '-Infinity')", x) : NULL;

		switch (v->kind)
		{
			case AGG_DK_COUNT_STAR:
			case AGG_DK_AVG:
				break;
			case AGG_DK_COUNT:
				cols = lappend(cols, agg_log_column(dname, "0::bigint",
													psprintf("CASE WHEN %s IS NULL THEN 0 ELSE 1 END", x),
													psprintf("CASE WHEN %s IS NULL THEN 0 ELSE -1 END", x),
													"sum"));
				break;
			case AGG_DK_SUM:
				if (!v->nonfinite)
				{
					cols = lappend(cols, agg_log_column(dname, "0::numeric",
														psprintf("%s::numeric", x),
														psprintf("-(%s::numeric)", x),
														"sum"));
					break;
				}
				/* numeric: the finite values' sum, the others counted */
				cols = lappend(cols, agg_log_column(dname, "0::numeric",
													psprintf("CASE WHEN %s THEN NULL ELSE %s END", nonfin, x),
													psprintf("CASE WHEN %s THEN NULL ELSE -%s END", nonfin, x),
													"sum"));
				cols = lappend(cols, agg_log_column(psprintf("__pulse_x_%d", i + 1),
													"0::bigint",
													psprintf("CASE WHEN %s THEN 1 ELSE 0 END", nonfin),
													psprintf("CASE WHEN %s THEN 1 ELSE 0 END", nonfin),
													"sum"));
				if (!v->track_scale)
					break;
				/* the largest scale of the new and of the old values */
				cols = lappend(cols, agg_log_column(psprintf("__pulse_s_%d", i + 1),
													"0::integer",
													psprintf("scale(%s)", x),
													"NULL::integer", "max"));
				cols = lappend(cols, agg_log_column(psprintf("__pulse_t_%d", i + 1),
													"0::integer", "NULL::integer",
													psprintf("scale(%s)", x), "max"));
				break;
			case AGG_DK_MIN:
			case AGG_DK_MAX:
				cols = lappend(cols, agg_log_column(dname, psprintf("s.%s", x),
													(char *) x, nothing, extreme));
				cols = lappend(cols, agg_log_column(psprintf("__pulse_e_%d", i + 1),
													psprintf("s.%s", x),
													nothing, (char *) x, extreme));
				break;
		}
	}
	return cols;
}

/*
 * Creates the log table of aggregate id: the keys (of the source columns'
 * types) and cols (List of AggLogColumn) of an incremental aggregate, none
 * for a full-mode one; then __pulse_full (a TRUNCATE or another reason to
 * refresh fully) and __pulse_at.
 */
static void
agg_create_log(const char *log, AggShape *shape, List *cols)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	if (!shape->incremental)
		appendStringInfo(&sql, "CREATE TABLE %s ()", log);
	else
	{
		appendStringInfo(&sql, "CREATE TABLE %s AS SELECT ", log);
		foreach(lc, shape->keys)
			appendStringInfo(&sql, "%ss.%s AS %s",
							 foreach_current_index(lc) > 0 ? ", " : "",
							 quote_identifier((char *) list_nth(shape->source_cols,
																foreach_current_index(lc))),
							 quote_identifier((char *) lfirst(lc)));
		foreach(lc, cols)
		{
			AggLogColumn *c = lfirst(lc);

			appendStringInfo(&sql, ", %s AS %s", c->type_expr, c->name);
		}
		appendStringInfo(&sql, " FROM %s s WITH NO DATA",
						 agg_rel_name(shape->source));
	}
	agg_exec0(sql.data);
	agg_exec0(psprintf("ALTER TABLE %s "
					   "ADD COLUMN __pulse_full boolean NOT NULL DEFAULT false, "
					   "ADD COLUMN __pulse_at timestamptz NOT NULL DEFAULT now()",
					   log));
}

/*
 * The statement of the trigger body that logs what one statement did to an
 * incremental aggregate's source: one log row per group touched by the rows
 * of pulse_new (with_new) and of pulse_old (with_old), with the columns
 * cols summed up per group.  An UPDATE reads both: one log row for a group
 * whose key did not change.  Without cols it logs the distinct keys.
 */
static char *
agg_log_statement(const char *log, AggShape *shape, List *cols,
				  bool with_new, bool with_old)
{
	char	   *srccols = agg_column_list(shape->source_cols, "");
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (%s", log,
					 agg_column_list(shape->keys, ""));
	foreach(lc, cols)
		appendStringInfo(&sql, ", %s", ((AggLogColumn *) lfirst(lc))->name);
	appendStringInfo(&sql, ") SELECT %s", srccols);
	foreach(lc, cols)
	{
		AggLogColumn *c = lfirst(lc);

		appendStringInfo(&sql, ", %s(u.%s)", c->combine, c->name);
	}
	appendStringInfoString(&sql, " FROM (");
	for (int side = 0; side < 2; side++)
	{
		bool		new_rows = (side == 0);

		if (new_rows ? !with_new : !with_old)
			continue;
		if (side == 1 && with_new)
			appendStringInfoString(&sql, " UNION ALL ");
		appendStringInfo(&sql, "SELECT %s", srccols);
		foreach(lc, cols)
		{
			AggLogColumn *c = lfirst(lc);

			appendStringInfo(&sql, ", %s AS %s",
							 new_rows ? c->new_row : c->old_row, c->name);
		}
		appendStringInfo(&sql, " FROM %s", new_rows ? "pulse_new" : "pulse_old");
	}
	appendStringInfo(&sql, ") u GROUP BY %s", srccols);
	return sql.data;
}

/*
 * The body of the capture function: on INSERT, UPDATE and DELETE the given
 * statements; on TRUNCATE, a log row asking for a full refresh.
 */
static char *
agg_capture_body(const char *log, const char *on_insert,
				 const char *on_update, const char *on_delete)
{
	return psprintf("BEGIN\n"
					"  IF TG_OP = 'INSERT' THEN\n"
					"    %s;\n"
					"  ELSIF TG_OP = 'UPDATE' THEN\n"
					"    %s;\n"
					"  ELSIF TG_OP = 'DELETE' THEN\n"
					"    %s;\n"
					"  ELSE\n"
					"    INSERT INTO %s (__pulse_full) VALUES (true);\n"
					"  END IF;\n"
					"  RETURN NULL;\n"
					"END",
					on_insert, on_update, on_delete, log);
}

/* Creates trigger tgname AFTER event (on rel) calling capture. */
static void
agg_create_trigger(const char *tgname, const char *event, const char *rel,
				   const char *capture)
{
	agg_exec0(psprintf("CREATE TRIGGER %s AFTER %s "
					   "FOR EACH STATEMENT EXECUTE FUNCTION %s()",
					   tgname, psprintf(event, rel), capture));
	agg_exec0(psprintf("ALTER TRIGGER %s ON %s DEPENDS ON EXTENSION pulse",
					   tgname, rel));
}

/*
 * Creates the triggers of aggregate id on each table of shape->tracked_rels
 * (none when untracked), calling capture: one per event with transition
 * tables for an incremental aggregate, one for all events otherwise.
 */
static void
agg_create_triggers(int32 id, AggShape *shape, const char *capture)
{
	static const char *const events[][2] = {
		{"ins", "INSERT ON %s REFERENCING NEW TABLE AS pulse_new"},
		{"upd", "UPDATE ON %s REFERENCING OLD TABLE AS pulse_old NEW TABLE AS pulse_new"},
		{"del", "DELETE ON %s REFERENCING OLD TABLE AS pulse_old"},
		{"trunc", "TRUNCATE ON %s"},
	};
	ListCell   *lc;

	if (!shape->tracked)
		return;
	foreach(lc, shape->tracked_rels)
	{
		char	   *rel = agg_rel_name(lfirst_oid(lc));

		if (!shape->incremental)
			agg_create_trigger(psprintf("pulse_aggregate_%d", id),
							   "INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s",
							   rel, capture);
		else
			for (int i = 0; i < lengthof(events); i++)
				agg_create_trigger(psprintf("pulse_aggregate_%d_%s", id, events[i][0]),
								   events[i][1], rel, capture);
	}
}

/*
 * Creates the log table, the capture function and the triggers of aggregate
 * id.  Caller is connected to SPI.
 */
void
agg_create_capture(int32 id, AggShape *shape)
{
	char	   *log = agg_pulse_object(id, "log");
	char	   *capture = agg_pulse_object(id, "capture");
	List	   *cols = shape->delta ? agg_log_columns(shape->delta) : NIL;
	char	   *body;

	agg_create_log(log, shape, cols);
	if (shape->incremental)
		body = agg_capture_body(log,
								agg_log_statement(log, shape, cols, true, false),
								agg_log_statement(log, shape, cols, true, true),
								agg_log_statement(log, shape, cols, false, true));
	else
	{
		char	   *stmt = psprintf("INSERT INTO %s (__pulse_full) VALUES (false)", log);

		body = agg_capture_body(log, stmt, stmt, stmt);
	}

	agg_exec0(psprintf("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql "
					   "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %s",
					   capture, quote_literal_cstr(body)));

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

	agg_create_triggers(id, shape, capture);
}
