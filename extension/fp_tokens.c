/*-------------------------------------------------------------------------
 *
 * fp_tokens.c
 *		The token side of query fingerprints: the core scanner's tokens of a
 *		query, the token form of statements the tree walker does not know,
 *		and the edits pulse.normalize() will make, which the walker records
 *		here as it meets literals (see normalize.c for the rules).
 *
 * Everything here works in the private memory context of one fingerprint
 * or normalize call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/keywords.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "parser/scansup.h"
#include "parser/gram.h"			/* token codes; needs scanner.h first */

#include "fp_int.h"

static bool tok_is_interval_field(int tok);
static void tok_text(const FpQuery *q, int from, int to,
					 StringInfo out);

/*
 * Run the core scanner over the whole query and record its tokens, and the
 * highest $n.  The query has been parsed already, so the scanner cannot fail.
 */
void
fp_scan(FpQuery *q)
{
	core_yyscan_t yyscanner;
	core_yy_extra_type yyextra;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			maxtokens = 64;

	q->tokens = palloc(sizeof(FpToken) * maxtokens);
	q->ntokens = 0;

	yyscanner = scanner_init(q->query, &yyextra, &ScanKeywords,
							 ScanKeywordTokens);
	yyextra.escape_string_warning = false;

	for (;;)
	{
		int			tok = core_yylex(&yylval, &yylloc, yyscanner);
		FpToken    *t;

		if (tok == 0)
			break;
		if (q->ntokens >= maxtokens)
		{
			maxtokens *= 2;
			q->tokens = repalloc(q->tokens, sizeof(FpToken) * maxtokens);
		}
		t = &q->tokens[q->ntokens++];
		t->tok = tok;
		t->start = yylloc;

		/*
		 * The scanner leaves a NUL just past the text of the token it has
		 * returned (for a string literal, just past its closing quote), so
		 * this is the token's length.
		 */
		t->end = yylloc + strlen(yyextra.scanbuf + yylloc);
		t->text = NULL;

		switch (tok)
		{
			case IDENT:
			case UIDENT:
			case Op:
				t->text = yylval.str;
				break;
			case PARAM:
				q->max_param = Max(q->max_param, yylval.ival);
				break;
			case ICONST:
			case FCONST:
			case SCONST:
			case USCONST:
			case BCONST:
			case XCONST:
			case TYPECAST:
			case DOT_DOT:
			case COLON_EQUALS:
			case EQUALS_GREATER:
			case LESS_EQUALS:
			case GREATER_EQUALS:
			case NOT_EQUALS:
				break;
			default:
				/* any other code above 255 is a keyword */
				if (tok > 255)
					t->text = yylval.keyword;
				break;
		}
	}

	scanner_finish(yyscanner);
}

/* The index of the token that starts at location, or -1. */
int
fp_token_at(const FpQuery *q, int location)
{
	int			lo = 0;
	int			hi = q->ntokens - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			start = q->tokens[mid].start;

		if (start == location)
			return mid;
		if (start < location)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * If token i starts a literal, return the index of its last token, else -1.
 *
 * U&'...' UESCAPE '!' is one literal.  For a constant of the tree (bytree),
 * '-' signs followed by a number are a negative number the grammar folded
 * into one constant, and TRUE, FALSE and NULL are literals; in a token
 * stream they are not.
 */
int
fp_literal_last(const FpQuery *q, int i, bool bytree)
{
	switch (q->tokens[i].tok)
	{
		case ICONST:
		case FCONST:
		case SCONST:
		case BCONST:
		case XCONST:
			return i;
		case USCONST:
			if (i + 2 < q->ntokens &&
				q->tokens[i + 1].tok == UESCAPE &&
				q->tokens[i + 2].tok == SCONST)
				return i + 2;
			return i;
		case '-':
			if (!bytree)
				return -1;
			while (i + 1 < q->ntokens && q->tokens[i + 1].tok == '-')
				i++;
			if (i + 1 < q->ntokens &&
				(q->tokens[i + 1].tok == ICONST ||
				 q->tokens[i + 1].tok == FCONST))
				return i + 1;
			return -1;
		case TRUE_P:
		case FALSE_P:
		case NULL_P:
			return bytree ? i : -1;
		default:
			return -1;
	}
}

/*
 * Write the token stream of a statement (see fingerprint.c).
 */
void
fp_tokens(const FpQuery *q, const FpStmt *st, StringInfo buf)
{
	appendStringInfoString(buf, " {TOKENS");
	for (int i = 0; i < q->ntokens; i++)
	{
		const FpToken *t = &q->tokens[i];
		int			last;

		if (t->start < st->start)
			continue;
		if (t->start >= st->end)
			break;

		last = fp_literal_last(q, i, false);
		if (last >= 0)
		{
			appendStringInfoString(buf, " ?");
			i = last;
			continue;
		}

		switch (t->tok)
		{
			case IDENT:
			case UIDENT:
				appendStringInfo(buf, " i%zu:%s", strlen(t->text), t->text);
				break;
			case Op:
				appendStringInfo(buf, " o%s", t->text);
				break;
			case PARAM:
				/* parameters count as literals */
				appendStringInfoString(buf, " ?");
				break;
			case TYPECAST:
				appendStringInfoString(buf, " ::");
				break;
			case DOT_DOT:
				appendStringInfoString(buf, " ..");
				break;
			case COLON_EQUALS:
				appendStringInfoString(buf, " :=");
				break;
			case EQUALS_GREATER:
				appendStringInfoString(buf, " =>");
				break;
			case LESS_EQUALS:
				appendStringInfoString(buf, " <=");
				break;
			case GREATER_EQUALS:
				appendStringInfoString(buf, " >=");
				break;
			case NOT_EQUALS:
				appendStringInfoString(buf, " <>");
				break;
			default:
				if (t->text != NULL)
					appendStringInfo(buf, " k%s", t->text);
				else if (t->tok < 256)
					appendStringInfo(buf, " c%c", (char) t->tok);
				else
					appendStringInfo(buf, " t%d", t->tok);
				break;
		}
	}
	appendStringInfoChar(buf, '}');
}

/* Record an edit for normalize (see FpEdit). */
void
fp_add_edit(FpQuery *q, int start, int end, bool param, const char *text)
{
	FpEdit	   *e;

	if (q->nedits >= q->maxedits)
	{
		q->maxedits = Max(16, q->maxedits * 2);
		if (q->edits == NULL)
			q->edits = palloc(sizeof(FpEdit) * q->maxedits);
		else
			q->edits = repalloc(q->edits, sizeof(FpEdit) * q->maxedits);
	}
	e = &q->edits[q->nedits++];
	e->start = start;
	e->end = end;
	e->param = param;
	e->prefix = NULL;
	e->text = text;
}

static bool
tok_is_interval_field(int tok)
{
	return tok == YEAR_P || tok == MONTH_P || tok == DAY_P ||
		tok == HOUR_P || tok == MINUTE_P || tok == SECOND_P;
}

/*
 * Append the text of tokens [from, to), without comments: tokens that were
 * apart are one space apart, tokens that were glued stay glued.
 */
static void
tok_text(const FpQuery *q, int from, int to, StringInfo out)
{
	for (int i = from; i < to; i++)
	{
		if (i > from && q->tokens[i].start > q->tokens[i - 1].end)
			appendStringInfoChar(out, ' ');
		appendBinaryStringInfo(out, q->query + q->tokens[i].start,
							   q->tokens[i].end - q->tokens[i].start);
	}
}

/*
 * Turn the edit of a type-prefixed literal (lit, the literal's own edit)
 * into one that writes $n::type over the type name, the literal and, for an
 * interval, the field qualifier after it.  The type is written with its
 * tokens as they were, less comments, except CHAR and NCHAR without a
 * length, which the grammar reads as bpchar of any length here but as
 * char(1) in a cast.
 */
void
fp_typed_edit(FpQuery *q, FpEdit *lit, const TypeName *tn)
{
	StringInfoData type;
	const char *name = strVal(llast(tn->names));
	int			first = fp_token_at(q, tn->location);
	int			t = fp_token_at(q, lit->start);

	if (first < 0 || t < 0)
		return;
	initStringInfo(&type);
	appendStringInfoString(&type, "::");
	if (list_length(tn->names) == 2 && tn->typmods == NIL &&
		strcmp(strVal(linitial(tn->names)), "pg_catalog") == 0 &&
		(strcmp(name, "bpchar") == 0 || strcmp(name, "bit") == 0))
		appendStringInfo(&type, "pg_catalog.%s", name);
	else
	{
		const A_Const *mod = tn->typmods != NIL ? linitial(tn->typmods) : NULL;

		tok_text(q, first, t, &type);

		/* interval '1' day: the qualifier follows the literal */
		while (t < q->ntokens && q->tokens[t].end < lit->end)
			t++;
		if (mod != NULL && IsA(mod, A_Const) && mod->location > lit->start &&
			t + 1 < q->ntokens && tok_is_interval_field(q->tokens[t + 1].tok))
		{
			int			last = t + 1;

			if (last + 2 < q->ntokens && q->tokens[last + 1].tok == TO &&
				tok_is_interval_field(q->tokens[last + 2].tok))
				last += 2;
			if (q->tokens[last].tok == SECOND_P && last + 3 < q->ntokens &&
				q->tokens[last + 1].tok == '(' &&
				q->tokens[last + 2].tok == ICONST &&
				q->tokens[last + 3].tok == ')')
				last += 3;
			appendStringInfoChar(&type, ' ');
			tok_text(q, t + 1, last + 1, &type);
			lit->end = q->tokens[last].end;
		}
	}
	lit->start = tn->location;
	lit->text = type.data;
}

/*
 * Record the edits that squash a list of constants for normalize (see the
 * file header): the elements not kept are cut, each with the separator
 * before it, and a comment saying ", ... " is written after the last
 * element.  The
 * list is found in the tokens: its opening character open is the first
 * after location.  Nothing is recorded when the tokens do not show nelems
 * elements.
 */
void
fp_squash_edits(FpQuery *q, int location, char open, int nelems,
				const bool *keep)
{
	int			t = fp_token_at(q, location);
	int		   *last = palloc(sizeof(int) * nelems);
	int			n = 0;
	int			depth = 0;

	if (t < 0)
		return;
	while (t < q->ntokens && q->tokens[t].tok != open)
		t++;
	for (t++; t < q->ntokens; t++)
	{
		int			tok = q->tokens[t].tok;

		if (tok == '(' || tok == '[')
			depth++;
		else if ((tok == ')' || tok == ']') && depth > 0)
			depth--;
		else if (tok == ')' || tok == ']' || (tok == ',' && depth == 0))
		{
			if (n >= nelems)
				return;
			last[n++] = t - 1;
			if (tok != ',')
				break;
		}
	}
	if (n != nelems)
		return;

	for (int i = 1; i < nelems; i++)
	{
		if (!keep[i])
			fp_add_edit(q, q->tokens[last[i - 1]].end, q->tokens[last[i]].end,
						false, "");
	}
	fp_add_edit(q, q->tokens[last[nelems - 1]].end,
				q->tokens[last[nelems - 1]].end, false, " /*, ... */");
}

