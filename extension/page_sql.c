/*-------------------------------------------------------------------------
 *
 * page_sql.c
 *		The SQL of a keyset page: parsing order_by, and building the query
 *		that wraps the caller's SELECT, seeks past the cursor and orders.
 *
 * A page of query in the order order_by names is
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
 * sort key is proven NOT NULL (page_nullable.c) the predicate is a chain of
 * row comparisons, one per run of keys sharing a direction, led by a
 * redundant bound on the first run that the index uses as its start key:
 *
 *		(a, b) >= ($1, $2) AND ((a, b) > ($1, $2) OR ((a, b) = ($1, $2) AND c < $3))
 *
 * Keys that may be NULL get the general form, which spells out where NULLs
 * sort (NULLS FIRST/LAST) so that every row is returned exactly once.  (A
 * composite key is tested with IS [NOT] DISTINCT FROM NULL, as IS NULL looks
 * at its fields.)  The
 * general form is right for any key; the row form only for keys that are
 * never NULL, which is why a key is treated as nullable unless proven not.
 * Backward pages use the same construction on the reversed order and the
 * caller reverses the rows they fetched.
 *
 * Identifiers are always quoted; values never appear in the text: the
 * caller's parameters keep $1..$n and the cursor's key values follow.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "pulse.h"

static void ps_order_error(const char *order_by, const char *detail) pg_attribute_noreturn();

/* ------------------------------------------------------------------------
 * order_by
 * ------------------------------------------------------------------------
 */

static void
ps_order_error(const char *order_by, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid order_by: \"%s\"", order_by),
			 errdetail("%s", detail),
			 errhint("Use a comma-separated list of column names, each optionally followed by ASC or DESC and NULLS FIRST or NULLS LAST.")));
}

static bool
ps_is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		(unsigned char) c >= 0x80;
}

static bool
ps_is_ident_char(char c)
{
	return ps_is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Reads one identifier at *p (quoted or not); returns it, advances *p. */
static char *
ps_read_ident(const char *order_by, const char **p)
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
				ps_order_error(order_by, "unterminated quoted identifier");
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
			ps_order_error(order_by, "zero-length quoted identifier");
	}
	else if (ps_is_ident_start(*s))
	{
		while (ps_is_ident_char(*s))
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
ps_skip_space(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

/*
 * Reads the keyword kw (lower case) if it is the next word at *p, after
 * spaces; leaves *p alone otherwise.
 */
static bool
ps_accept(const char **p, const char *kw)
{
	const char *s = *p;
	char	   *word;

	ps_skip_space(&s);
	if (*s == '"' || !ps_is_ident_start(*s))
		return false;
	word = ps_read_ident(NULL, &s);
	if (strcmp(word, kw) != 0)
		return false;
	*p = s;
	return true;
}

/* Reads the optional ASC/DESC and NULLS FIRST/LAST after a key's name. */
static void
ps_read_modifiers(const char *order_by, const char **p, PageKey *k)
{
	if (ps_accept(p, "asc"))
		k->desc = false;
	else if (ps_accept(p, "desc"))
		k->desc = true;
	k->nulls_first = k->desc;	/* PostgreSQL's default */
	if (ps_accept(p, "nulls"))
	{
		if (ps_accept(p, "first"))
			k->nulls_first = true;
		else if (ps_accept(p, "last"))
			k->nulls_first = false;
		else
			ps_order_error(order_by, "NULLS must be followed by FIRST or LAST");
	}
}

PageKey *
pulse_page_parse_order(const char *order_by, int *nkeys)
{
	PageKey    *keys = palloc0(sizeof(PageKey) * PULSE_PAGE_MAX_KEYS);
	const char *p = order_by;
	int			n = 0;

	for (;;)
	{
		PageKey    *k;

		ps_skip_space(&p);
		if (n == PULSE_PAGE_MAX_KEYS)
			ps_order_error(order_by, psprintf("at most %d sort keys are allowed",
											  PULSE_PAGE_MAX_KEYS));
		k = &keys[n];
		k->name = ps_read_ident(order_by, &p);
		if (k->name == NULL)
			ps_order_error(order_by, *p ? "expected a column name" : "no sort key given");
		for (int i = 0; i < n; i++)
			if (strcmp(keys[i].name, k->name) == 0)
				ps_order_error(order_by, psprintf("column \"%s\" appears twice", k->name));
		ps_read_modifiers(order_by, &p, k);
		n++;

		ps_skip_space(&p);
		if (*p == '\0')
			break;
		if (*p != ',')
			ps_order_error(order_by, psprintf("unexpected \"%s\"", p));
		p++;
	}
	*nkeys = n;
	return keys;
}

char *
pulse_page_order_sql(const PageKey *keys, int nkeys, bool reverse)
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
 * The seek predicate
 * ------------------------------------------------------------------------
 */

/* Appends "(k_from, ..., k_to)" or "($p_from, ...)" for a run of keys. */
static void
ps_append_row(StringInfo buf, const PageQueryInfo *info, int from, int to,
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
 * The tests "key i is (not) NULL" for the general form.  For a composite
 * key IS NULL is true when every field is NULL and IS NOT NULL when none
 * is, while ORDER BY sorts such values among the others: only a NULL value
 * itself sorts as NULL, which IS [NOT] DISTINCT FROM NULL tests.
 */
static void
ps_null_tests(const PageQueryInfo *info, int i, const char **is_null,
			  const char **is_not_null)
{
	bool		row = type_is_rowtype(info->keytypes[i]);

	*is_null = row ? "IS NOT DISTINCT FROM NULL" : "IS NULL";
	*is_not_null = row ? "IS DISTINCT FROM NULL" : "IS NOT NULL";
}

/*
 * Rows strictly after the cursor for keys i..n-1, general form (NULLs
 * allowed).  nullmask[i]: the cursor's value for key i is NULL.
 */
static void
ps_append_after_general(StringInfo buf, const PageQueryInfo *info,
						bool reverse, const bool *nullmask, int i, int pb)
{
	const char *col = quote_identifier(info->keys[i].name);
	bool		desc = info->keys[i].desc != reverse;
	bool		nf = info->keys[i].nulls_first != reverse;
	bool		last = (i == info->nkeys - 1);
	bool		notnull = info->keynotnull[i];
	const char *is_null;
	const char *is_not_null;
	StringInfoData strict;

	ps_null_tests(info, i, &is_null, &is_not_null);

	/* strictly after on key i */
	initStringInfo(&strict);
	if (nullmask[i])
	{
		/* NULLS FIRST: every non-NULL value is after; NULLS LAST: none */
		if (nf)
			appendStringInfo(&strict, "pulse_q.%s %s", col, is_not_null);
	}
	else
	{
		appendStringInfo(&strict, "pulse_q.%s %s $%d", col, desc ? "<" : ">", pb + i + 1);
		if (!nf && !notnull)
			appendStringInfo(&strict, " OR pulse_q.%s %s", col, is_null);
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
		appendStringInfo(buf, "(pulse_q.%s %s AND ", col, is_null);
	else
		appendStringInfo(buf, "(pulse_q.%s = $%d AND ", col, pb + i + 1);
	ps_append_after_general(buf, info, reverse, nullmask, i + 1, pb);
	appendStringInfoString(buf, "))");
}

/*
 * Rows strictly after the cursor when every key is NOT NULL: row
 * comparisons over runs of keys sharing a direction, starting at key i.
 */
static void
ps_append_after_rows(StringInfo buf, const PageQueryInfo *info, bool reverse,
					 int i, int pb)
{
	int			j = i;
	bool		desc = info->keys[i].desc != reverse;

	while (j + 1 < info->nkeys && (info->keys[j + 1].desc != reverse) == desc)
		j++;

	ps_append_row(buf, info, i, j, false, 0);
	appendStringInfoString(buf, desc ? " < " : " > ");
	ps_append_row(buf, info, i, j, true, pb);
	if (j + 1 < info->nkeys)
	{
		appendStringInfoString(buf, " OR (");
		ps_append_row(buf, info, i, j, false, 0);
		appendStringInfoString(buf, " = ");
		ps_append_row(buf, info, i, j, true, pb);
		appendStringInfoString(buf, " AND (");
		ps_append_after_rows(buf, info, reverse, j + 1, pb);
		appendStringInfoString(buf, "))");
	}
}

/*
 * The WHERE clause of a page after (in the possibly reversed order) the
 * cursor values, with the key values at $pb+1..$pb+nkeys.
 */
static char *
ps_predicate(const PageQueryInfo *info, bool reverse, const bool *nullmask,
			 int pb)
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
			ps_append_row(&buf, info, 0, run_end - 1, false, 0);
			appendStringInfoString(&buf, desc0 ? " <= " : " >= ");
			ps_append_row(&buf, info, 0, run_end - 1, true, pb);
			appendStringInfoString(&buf, " AND (");
			ps_append_after_rows(&buf, info, reverse, 0, pb);
			appendStringInfoChar(&buf, ')');
		}
		else
			ps_append_after_rows(&buf, info, reverse, 0, pb);
	}
	else
	{
		if (run_end > 0)
		{
			ps_append_row(&buf, info, 0, run_end - 1, false, 0);
			appendStringInfoString(&buf, desc0 ? " <= " : " >= ");
			ps_append_row(&buf, info, 0, run_end - 1, true, pb);
			appendStringInfoString(&buf, " AND ");
		}
		ps_append_after_general(&buf, info, reverse, nullmask, 0, pb);
	}
	return buf.data;
}

char *
pulse_page_build_sql(const PageQueryInfo *info, bool with_cursor, bool reverse,
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
						 ps_predicate(info, reverse, nullmask, info->nparams));
	appendStringInfo(&buf, "\nORDER BY %s\nLIMIT %d",
					 pulse_page_order_sql(info->keys, info->nkeys, reverse), limit);
	return buf.data;
}
