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

/*
 * Creates the log table, the capture function and the triggers of aggregate
 * id.  Caller is connected to SPI.
 */
void
agg_create_capture(int32 id, AggShape *shape)
{
	char	   *log = agg_pulse_object(id, "log");
	char	   *capture = agg_pulse_object(id, "capture");
	StringInfoData body;
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&body);
	initStringInfo(&sql);

	if (shape->delta != NULL)
	{
		AggDelta   *d = shape->delta;
		char	   *src = agg_rel_name(shape->source);
		char	   *keycols = agg_column_list(shape->keys, "");
		char	   *srccols = agg_column_list(shape->source_cols, "");
		StringInfoData cols;	/* log columns of inserted rows */
		StringInfoData ins;		/* their values */
		StringInfoData dcols;	/* log columns of deleted rows */
		StringInfoData del;		/* their values */
		StringInfoData ucols;	/* log columns of an UPDATE */
		StringInfoData uagg;	/* their values, per group of u */
		StringInfoData unew;	/* u's columns from the new rows */
		StringInfoData uold;	/* u's columns from the old rows */

		/* the log's key and min/max columns copy the source columns' types */
		initStringInfo(&cols);
		initStringInfo(&ins);
		initStringInfo(&dcols);
		initStringInfo(&del);
		initStringInfo(&ucols);
		initStringInfo(&uagg);
		initStringInfo(&unew);
		initStringInfo(&uold);
		appendStringInfo(&sql, "CREATE TABLE %s AS SELECT ", log);
		foreach(lc, shape->keys)
			appendStringInfo(&sql, "s.%s AS %s, ",
							 quote_identifier((char *) list_nth(shape->source_cols,
																foreach_current_index(lc))),
							 quote_identifier((char *) lfirst(lc)));
		appendStringInfoString(&sql, "0::bigint AS __pulse_n");
		for (int i = 0; i < d->nvalues; i++)
		{
			AggDeltaValue *v = &d->v[i];
			const char *x = v->arg ? quote_identifier(v->arg) : NULL;

			switch (v->kind)
			{
				case AGG_DK_COUNT_STAR:
				case AGG_DK_AVG:
					break;
				case AGG_DK_COUNT:
					appendStringInfo(&sql, ", 0::bigint AS __pulse_d_%d", i + 1);
					appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&ins, ", count(%s)", x);
					appendStringInfo(&dcols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&del, ", -count(%s)", x);
					appendStringInfo(&ucols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&uagg, ", sum(u.__pulse_d_%d)", i + 1);
					appendStringInfo(&unew, ", CASE WHEN %s IS NULL THEN 0 ELSE 1 END AS __pulse_d_%d", x, i + 1);
					appendStringInfo(&uold, ", CASE WHEN %s IS NULL THEN 0 ELSE -1 END", x);
					break;
				case AGG_DK_SUM:
					appendStringInfo(&sql, ", 0::numeric AS __pulse_d_%d", i + 1);
					appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&ins, ", sum(%s::numeric)", x);
					appendStringInfo(&dcols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&del, ", -sum(%s::numeric)", x);
					appendStringInfo(&ucols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&uagg, ", sum(u.__pulse_d_%d)", i + 1);
					appendStringInfo(&unew, ", %s::numeric AS __pulse_d_%d", x, i + 1);
					appendStringInfo(&uold, ", -(%s::numeric)", x);
					break;
				case AGG_DK_MIN:
				case AGG_DK_MAX:
					appendStringInfo(&sql, ", s.%s AS __pulse_d_%d, s.%s AS __pulse_e_%d",
									 x, i + 1, x, i + 1);
					appendStringInfo(&cols, ", __pulse_d_%d", i + 1);
					appendStringInfo(&ins, ", %s(%s)",
									 v->kind == AGG_DK_MIN ? "min" : "max", x);
					appendStringInfo(&dcols, ", __pulse_e_%d", i + 1);
					appendStringInfo(&del, ", %s(%s)",
									 v->kind == AGG_DK_MIN ? "min" : "max", x);
					appendStringInfo(&ucols, ", __pulse_d_%d, __pulse_e_%d", i + 1, i + 1);
					appendStringInfo(&uagg, ", %s(u.__pulse_d_%d), %s(u.__pulse_e_%d)",
									 v->kind == AGG_DK_MIN ? "min" : "max", i + 1,
									 v->kind == AGG_DK_MIN ? "min" : "max", i + 1);
					/* CASE WHEN false THEN x END: a NULL of x's type */
					appendStringInfo(&unew, ", %s AS __pulse_d_%d, CASE WHEN false THEN %s END AS __pulse_e_%d",
									 x, i + 1, x, i + 1);
					appendStringInfo(&uold, ", CASE WHEN false THEN %s END, %s", x, x);
					break;
			}
		}
		appendStringInfo(&sql, " FROM %s s WITH NO DATA", src);
		agg_exec0(sql.data);
		agg_exec0(psprintf("ALTER TABLE %s "
						   "ADD COLUMN __pulse_full boolean NOT NULL DEFAULT false, "
						   "ADD COLUMN __pulse_at timestamptz NOT NULL DEFAULT now()",
						   log));

		/*
		 * One log row per group a statement touches, with its deltas; an
		 * UPDATE's old and new rows are summed up together (one statement,
		 * one row for a group whose key did not change).
		 */
		appendStringInfo(&body,
						 "BEGIN\n"
						 "  IF TG_OP = 'INSERT' THEN\n"
						 "    INSERT INTO %s (%s, __pulse_n%s) SELECT %s, count(*)%s FROM pulse_new GROUP BY %s;\n"
						 "  ELSIF TG_OP = 'UPDATE' THEN\n"
						 "    INSERT INTO %s (%s, __pulse_n%s) SELECT %s, sum(u.__pulse_n)%s FROM (\n"
						 "      SELECT %s, 1 AS __pulse_n%s FROM pulse_new\n"
						 "      UNION ALL SELECT %s, -1%s FROM pulse_old) u GROUP BY %s;\n"
						 "  ELSIF TG_OP = 'DELETE' THEN\n"
						 "    INSERT INTO %s (%s, __pulse_n%s) SELECT %s, -count(*)%s FROM pulse_old GROUP BY %s;\n"
						 "  ELSE\n"
						 "    INSERT INTO %s (__pulse_full) VALUES (true);\n"
						 "  END IF;\n"
						 "  RETURN NULL;\n"
						 "END",
						 log, keycols, cols.data, srccols, ins.data, srccols,
						 log, keycols, ucols.data, srccols, uagg.data,
						 srccols, unew.data, srccols, uold.data, srccols,
						 log, keycols, dcols.data, srccols, del.data, srccols,
						 log);
	}
	else if (shape->incremental)
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
