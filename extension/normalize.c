/*-------------------------------------------------------------------------
 *
 * normalize.c
 *		pulse.normalize(): the query with the edits the tree walker recorded
 *		(fp_tokens.c) applied.
 *
 * pulse.normalize() writes the query with each literal replaced by $n, in
 * text order, numbered from one more than the highest $n already in the
 * query; parameters already there, comments and whitespace are kept as
 * written.  Its output always parses, and fingerprint(normalize(q)) =
 * fingerprint(q):
 * - a literal is replaced where the grammar takes a parameter, which is
 *   everywhere in an expression; the values of SET, CYCLE ... SET c TO v
 *   DEFAULT w, and the literals of statements fingerprinted by tokens, are
 *   kept;
 * - a type-prefixed literal becomes a cast: DATE '2020-01-01' gives
 *   $1::date, interval '1' day gives $1::interval day, and CHAR 'x' and
 *   N'x' (a bpchar of any length) give $1::pg_catalog.bpchar;
 * - a list of two or more literal constants in IN (...) or ARRAY[...] is
 *   squashed as PostgreSQL 18's pg_stat_statements does: IN (1, 2, 3) gives
 *   IN ($1 followed by the comment ", ... ").  pulse keeps the first element
 *   of each distinct form (casts count: IN (1::int8, 2::int8) gives
 *   IN ($1::int8 and the comment)) and, like PostgreSQL 18, leaves lists
 *   with parameters as written;
 * - a negative number is one placeholder (-5 gives $1); the signed count
 *   of FETCH FIRST +5 ROWS gives FETCH FIRST (+$1) ROWS.
 * Should a normalized statement still fail to parse (a grammar position the
 * walker does not know takes no parameter), that statement keeps its
 * literals, and a DEBUG1 message says so.
 *
 * Everything here works in the private memory context of one fingerprint
 * or normalize call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "parser/parser.h"

#include "fp_int.h"

static int	norm_edit_cmp(const void *a, const void *b);
static void norm_apply(const FpQuery *q, const bool *skip, int from, int to,
					   int param, StringInfo out);
static bool norm_parses(const char *text);

static int
norm_edit_cmp(const void *a, const void *b)
{
	const FpEdit *ea = (const FpEdit *) a;
	const FpEdit *eb = (const FpEdit *) b;

	if (ea->start != eb->start)
		return (ea->start > eb->start) - (ea->start < eb->start);
	return (ea->end > eb->end) - (ea->end < eb->end);
}

/*
 * Write query text [from, to) with the edits of the statements not skipped
 * applied, numbering parameters after param.
 */
static void
norm_apply(const FpQuery *q, const bool *skip, int from, int to, int param,
		   StringInfo out)
{
	int			last = from;

	for (int s = 0; s < q->nstmts; s++)
	{
		const FpStmt *st = &q->stmts[s];

		if (skip[s] || st->end <= from || st->start >= to)
			continue;
		for (int i = st->first_edit; i < st->first_edit + st->nedits; i++)
		{
			const FpEdit *e = &q->edits[i];

			if (e->start < last)
				continue;		/* inside a squashed element, or seen twice */
			appendBinaryStringInfo(out, q->query + last, e->start - last);
			if (e->prefix != NULL)
				appendStringInfoString(out, e->prefix);
			if (e->param)
				appendStringInfo(out, "$%d", ++param);
			if (e->text != NULL)
				appendStringInfoString(out, e->text);
			last = e->end;
		}
	}
	appendBinaryStringInfo(out, q->query + last, to - last);
}

/*
 * Does text parse?  Only a syntax error is caught: raw_parser() takes no
 * lock, touches no shared state and allocates in CurrentMemoryContext only,
 * so nothing needs cleaning up but the error itself.
 */
static bool
norm_parses(const char *text)
{
	MemoryContext ctx = CurrentMemoryContext;
	bool		save_esw = escape_string_warning;
	volatile bool ok = true;

	PG_TRY();
	{
		escape_string_warning = false;
		(void) raw_parser(text, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		escape_string_warning = save_esw;
		MemoryContextSwitchTo(ctx);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_SYNTAX_ERROR)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	escape_string_warning = save_esw;
	return ok;
}

/*
 * The query with its literals replaced by $n (see the file header).
 * Allocates in CurrentMemoryContext.
 */
char *
fp_normalize(const char *query)
{
	FpQuery		q;
	StringInfoData canon;
	StringInfoData out;
	bool	   *skip;

	q.want_edits = true;
	initStringInfo(&canon);
	fp_build(query, &q, &canon);
	skip = palloc0(sizeof(bool) * q.nstmts);

	for (int s = 0; s < q.nstmts; s++)
	{
		FpStmt	   *st = &q.stmts[s];

		if (st->nedits > 1)
			qsort(q.edits + st->first_edit, st->nedits, sizeof(FpEdit),
				  norm_edit_cmp);
	}

	initStringInfo(&out);
	norm_apply(&q, skip, 0, q.len, q.max_param, &out);
	if (norm_parses(out.data))
		return out.data;

	/* find the statements whose normalized form does not parse */
	for (int s = 0; s < q.nstmts; s++)
	{
		FpStmt	   *st = &q.stmts[s];

		if (st->nedits == 0)
			continue;
		resetStringInfo(&out);
		norm_apply(&q, skip, st->start, st->end, q.max_param, &out);
		if (!norm_parses(out.data))
		{
			skip[s] = true;
			ereport(DEBUG1,
					(errmsg_internal("pulse.normalize: statement %d keeps its literals: its normalized form does not parse",
									 s + 1),
					 errdetail_internal("Normalized: %s", out.data)));
		}
	}
	resetStringInfo(&out);
	norm_apply(&q, skip, 0, q.len, q.max_param, &out);
	return out.data;
}
