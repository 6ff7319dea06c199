/*-------------------------------------------------------------------------
 *
 * fp_build.c
 *		The canonical text of a query, from which its fingerprint is hashed
 *		(fingerprint.c describes the form): parse, scan, and walk each
 *		statement's raw tree (fp_walk.c), or write its tokens when the walker
 *		does not know it (fp_tokens.c).  Also records the edits
 *		pulse.normalize() (normalize.c) applies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "parser/parser.h"
#include "utils/builtins.h"

#include "fp_int.h"

static void fp_parse_error_callback(void *arg);

/*
 * Error context callback for raw_parser(): report the error position against
 * the fingerprinted query text, not against the statement that called us.
 */
static void
fp_parse_error_callback(void *arg)
{
	const char *query = (const char *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(query);
	}
}

/*
 * Parse a query into a list of RawStmt; errors are the parser's.
 *
 * escape_string_warning is off while parsing: a fingerprint is computed, not
 * a query run, and must not emit warnings about the text it is given.
 */
List *
fp_parse(const char *query)
{
	ErrorContextCallback errcallback;
	bool		save_esw = escape_string_warning;
	List	   *raw = NIL;

	PG_TRY();
	{
		/* PG_FINALLY and PG_END_TRY pop it, on either path */
		errcallback.callback = fp_parse_error_callback;
		errcallback.arg = (void *) query;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;

		escape_string_warning = false;
		raw = raw_parser(query, RAW_PARSE_DEFAULT);
	}
	PG_FINALLY();
	{
		escape_string_warning = save_esw;
	}
	PG_END_TRY();

	return raw;
}

/*
 * Parse and scan a query and write the canonical text of each of its
 * statements to canon (see the file header), recording the edits of
 * pulse.normalize() on the way when q->want_edits.  The caller sets
 * want_edits in q, which is otherwise reset.  Allocates in
 * CurrentMemoryContext.
 */
void
fp_build(const char *query, FpQuery *q, StringInfo canon)
{
	bool		want_edits = q->want_edits;
	List	   *raw;
	ListCell   *lc;
	int			i = 0;

	memset(q, 0, sizeof(FpQuery));
	q->query = query;
	q->len = strlen(query);
	q->want_edits = want_edits;

	raw = fp_parse(query);
	if (raw == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query contains no SQL statement"),
				 errdetail("The query is empty, or contains only whitespace, comments or semicolons.")));
	fp_scan(q);

	q->nstmts = list_length(raw);
	q->stmts = palloc0(sizeof(FpStmt) * q->nstmts);
	appendStringInfoString(canon, FP_FORMAT_TAG);

	foreach(lc, raw)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		FpStmt	   *st = &q->stmts[i++];
		int			mark = canon->len;
		int			edits = q->nedits;
		FpOut		o;

		st->raw = rs;
		st->start = Max(rs->stmt_location, 0);
		st->end = rs->stmt_len > 0 ? st->start + rs->stmt_len : q->len;

		appendStringInfoChar(canon, '\n');
		st->first_edit = edits;
		memset(&o, 0, sizeof(FpOut));
		o.buf = canon;
		o.q = q;
		fp_node(&o, rs->stmt);
		st->bytree = !o.unsupported;
		if (!st->bytree)
		{
			/* forget the partial walk; the token form stands for it */
			canon->len = mark + 1;
			canon->data[canon->len] = '\0';
			q->nedits = edits;
			fp_tokens(q, st, canon);
		}
		st->nedits = q->nedits - edits;
	}
}

