/*-------------------------------------------------------------------------
 *
 * fingerprint.c
 *		Query fingerprints and normalized query text: pulse.fingerprint(),
 *		pulse.normalize(), and the C entry points page.c uses.
 *
 * A fingerprint identifies the structure of a query: it is the same for
 * queries that differ only in literal values, whitespace, comments, keyword
 * case or the number of constants in an IN (...) list or ARRAY[...], and it
 * differs when tables, columns, operators, functions, aliases or clauses
 * differ.  It is computed from the raw parse tree (raw_parser(), so names
 * rather than OIDs: no catalog access, the tables need not exist) as follows.
 *
 * 1. The query is parsed with RAW_PARSE_DEFAULT.  Invalid SQL raises the
 *    parser's own error (SQLSTATE 42601), its cursor position moved onto the
 *    query text (internalerrquery) rather than onto the calling statement.
 *    A query without any statement raises 22023.
 *
 * 2. Literals are identified.  An A_Const of the raw tree is a literal when
 *    the core scanner (the one raw_parser uses) finds a literal token at its
 *    location: a string of any kind (incl. E'', $$..$$, U&'' [UESCAPE ''],
 *    B'', X''), a number, a negative number ('-' folded into the constant by
 *    the grammar), or the keywords TRUE, FALSE and NULL.  Constants the
 *    grammar makes up from other keywords or identifiers (LIMIT ALL,
 *    EXTRACT(year FROM ...), FETCH FIRST ROW ONLY, IS NFC NORMALIZED) and
 *    type modifiers (varchar(10), interval day) are structure, not literals.
 *
 * 3. Each statement is serialized into a canonical text.  SELECT, INSERT,
 *    UPDATE, DELETE and MERGE are serialized from their raw tree by
 *    fp_node(): node tags, scalar fields and names, never pointers nor
 *    locations; every literal is written as "?" whatever its type or value;
 *    an IN list or an ARRAY[] whose elements are all constants (literals,
 *    possibly under casts, in nested arrays or in ROW()s) is written as the
 *    set of distinct element shapes, so its length does not count (the
 *    number of rows of a VALUES list does count).  $n parameters are
 *    structure: "a = $1" and "a = 1" differ, and so do $1 and $2.  Every
 *    other statement (utility statements such as CREATE or
 *    EXPLAIN), and a DML statement containing a node fp_node() does not know,
 *    is serialized as its token stream from the core scanner: keywords in
 *    their canonical lower case, identifiers as the scanner returns them
 *    (down-cased unless quoted), operators and punctuation, parameters as $n,
 *    and each literal token as "?".  IN-lists are not collapsed there, and
 *    TRUE/FALSE/NULL stay keywords.
 *
 * 4. A query with several statements is fingerprinted as a whole: the
 *    canonical texts of its statements, in order, after the format tag
 *    FP_FORMAT_TAG.  A trailing semicolon does not count.
 *
 * 5. The fingerprint is the first 8 bytes of the SHA-256 digest (OpenSSL
 *    EVP_Digest) of that text, as a big-endian uint64 or as 16 lowercase hex
 *    digits.  It does not depend on the server, the session, memory layout
 *    or the catalog, so it is stable across restarts and servers running the
 *    same PostgreSQL major version (another major version may parse
 *    differently).  FP_FORMAT_TAG is changed whenever the canonical form
 *    changes, so that a change of algorithm changes every fingerprint.
 *
 * pulse.normalize() replaces every literal found by step 2 (every literal
 * token, for statements serialized by tokens) with $n, numbering from one
 * more than the highest $n already in the query, in text order.  All other
 * text, comments and whitespace included, is kept as written.  A negative
 * number is one placeholder; a cast keeps its type ('x'::int gives $1::int)
 * and a type-prefixed literal keeps its prefix (interval '1 day' gives
 * interval $1), except N'x', which becomes $1 as a whole.
 *
 * Nothing here touches shared state: all work is done in a private memory
 * context that is deleted before returning.  The raw tree is private to the
 * call, which is why literal constants may be marked in place (see
 * FP_LOC_LITERAL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "common/keywords.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "parser/gram.h"			/* token codes; needs scanner.h first */
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pulse.h"

PG_FUNCTION_INFO_V1(pulse_fingerprint);
PG_FUNCTION_INFO_V1(pulse_normalize);

/* Hashed in front of every canonical form; bump when the form changes. */
#define FP_FORMAT_TAG	"pulse-fp/1"

/*
 * Once classified, a literal A_Const has its location overwritten with this
 * marker (real locations are >= 0, or -1 when unknown); fp_node() writes such
 * a constant as "?".  The original location is kept in its FpConst.
 */
#define FP_LOC_LITERAL	(-2)

/* One token of the query, as returned by the core scanner. */
typedef struct FpToken
{
	int			tok;			/* token code (parser/gram.h) or a char */
	int			start;			/* byte offset of the token */
	int			end;			/* byte offset just past the token */
	const char *text;			/* identifier, keyword or operator, or NULL */
	int			ival;			/* parameter number, for PARAM */
} FpToken;

/* One A_Const of a statement serialized from its tree. */
typedef struct FpConst
{
	A_Const    *node;
	int			location;		/* location as parsed */
	int			start;			/* start of its text when literal */
	int			end;			/* end of its text when literal, else -1 */
} FpConst;

/* One statement of the query. */
typedef struct FpStmt
{
	RawStmt    *raw;
	int			start;			/* byte range of its text */
	int			end;
	bool		bytree;			/* serialized from its tree, else tokens */
} FpStmt;

/* Everything known about a query once parsed and scanned. */
typedef struct FpQuery
{
	const char *query;
	int			len;
	FpStmt	   *stmts;
	int			nstmts;
	FpToken    *tokens;
	int			ntokens;
	FpConst    *consts;
	int			nconsts;
	int			maxconsts;
	int			max_param;		/* highest $n in the query, or 0 */
} FpQuery;

/* State of one fp_node() traversal. */
typedef struct FpOut
{
	StringInfo	buf;			/* where the canonical text goes */
	FpQuery    *q;
	bool		collect;		/* first pass: record A_Consts in q->consts */
	int			verbatim;		/* > 0 inside type modifiers */
	bool		unsupported;	/* met a node fp_node() does not know */
} FpOut;

static void fp_parse_error_callback(void *arg);
static List *fp_parse(const char *query);
static void fp_analyze(const char *query, FpQuery *q);
static void fp_scan(FpQuery *q);
static int	fp_literal_last(const FpQuery *q, int i, bool bytree);
static int	fp_literal_start(const FpQuery *q, int i);
static void fp_classify(FpQuery *q);
static void fp_node(FpOut *o, const Node *node);
static void fp_const_list(FpOut *o, const List *list);
static bool fp_is_constant(const Node *node);
static void fp_tokens(const FpQuery *q, const FpStmt *st, StringInfo buf);
static void fp_digest(const char *query, uint8 digest[8]);
static char *fp_normalize(const char *query);

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
static List *
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
 * Parse and scan a query, find its literals and decide how each statement is
 * serialized.  Allocates in CurrentMemoryContext.
 */
static void
fp_analyze(const char *query, FpQuery *q)
{
	List	   *raw;
	ListCell   *lc;
	StringInfoData scratch;
	int			i = 0;

	memset(q, 0, sizeof(FpQuery));
	q->query = query;
	q->len = strlen(query);

	raw = fp_parse(query);
	if (raw == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query contains no SQL statement"),
				 errdetail("The query is empty, or contains only whitespace, comments or semicolons.")));

	q->nstmts = list_length(raw);
	q->stmts = palloc0(sizeof(FpStmt) * q->nstmts);
	q->maxconsts = 16;
	q->consts = palloc(sizeof(FpConst) * q->maxconsts);
	initStringInfo(&scratch);

	foreach(lc, raw)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		FpStmt	   *st = &q->stmts[i++];

		st->raw = rs;
		st->start = Max(rs->stmt_location, 0);
		st->end = rs->stmt_len > 0 ? st->start + rs->stmt_len : q->len;

		switch (nodeTag(rs->stmt))
		{
			case T_SelectStmt:
			case T_InsertStmt:
			case T_UpdateStmt:
			case T_DeleteStmt:
			case T_MergeStmt:
				{
					FpOut		o;
					int			nconsts = q->nconsts;

					/* first pass: collect constants, check every node */
					memset(&o, 0, sizeof(FpOut));
					resetStringInfo(&scratch);
					o.buf = &scratch;
					o.q = q;
					o.collect = true;
					fp_node(&o, rs->stmt);
					st->bytree = !o.unsupported;
					if (!st->bytree)
						q->nconsts = nconsts;
				}
				break;
			default:
				st->bytree = false;
				break;
		}
	}
	pfree(scratch.data);

	fp_scan(q);
	fp_classify(q);
}

/*
 * Run the core scanner over the whole query and record its tokens, and the
 * highest $n.  The query has been parsed already, so the scanner cannot fail.
 */
static void
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
		t->ival = 0;

		switch (tok)
		{
			case IDENT:
			case UIDENT:
			case Op:
				t->text = yylval.str;
				break;
			case PARAM:
				t->ival = yylval.ival;
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

/*
 * If token i starts a literal, return the index of its last token, else -1.
 *
 * U&'...' UESCAPE '!' is one literal.  For a constant of the tree (bytree),
 * a '-' followed by a number is a negative number the grammar folded into one
 * constant, and TRUE, FALSE and NULL are literals; in a token stream they are
 * not.
 */
static int
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
			if (bytree && i + 1 < q->ntokens &&
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
 * Where the text of the literal starting at token i starts: N'...' is
 * scanned as the keyword NCHAR (just the "n") and a string glued to it, and
 * is replaced as a whole.
 */
static int
fp_literal_start(const FpQuery *q, int i)
{
	const FpToken *t = &q->tokens[i];

	if (t->tok == SCONST && i > 0 &&
		q->tokens[i - 1].tok == NCHAR &&
		q->tokens[i - 1].end == t->start &&
		t->start - q->tokens[i - 1].start == 1)
		return q->tokens[i - 1].start;
	return t->start;
}

static int
fp_const_cmp(const void *a, const void *b)
{
	int			la = ((const FpConst *) a)->location;
	int			lb = ((const FpConst *) b)->location;

	return (la > lb) - (la < lb);
}

/*
 * Decide which collected A_Consts are literals (see the file header), record
 * the end of their text and mark them with FP_LOC_LITERAL.
 */
static void
fp_classify(FpQuery *q)
{
	int			t = 0;

	if (q->nconsts > 1)
		qsort(q->consts, q->nconsts, sizeof(FpConst), fp_const_cmp);

	for (int i = 0; i < q->nconsts; i++)
	{
		FpConst    *c = &q->consts[i];
		int			last;

		c->end = -1;
		if (c->location < 0)
			continue;			/* made up by the grammar: structure */

		/* locations ascend, so the token search moves forward only */
		while (t < q->ntokens && q->tokens[t].start < c->location)
			t++;
		if (t >= q->ntokens || q->tokens[t].start != c->location)
			continue;			/* not at a token start: leave it be */

		last = fp_literal_last(q, t, true);
		if (last < 0)
			continue;			/* a keyword or identifier: structure */
		c->start = fp_literal_start(q, t);
		c->end = q->tokens[last].end;
		c->node->location = FP_LOC_LITERAL;
	}
}

/* Output primitives of fp_node(); all start with a space. */
static void
fp_tag(FpOut *o, const char *tag)
{
	appendStringInfo(o->buf, " {%s", tag);
}

static void
fp_end(FpOut *o)
{
	appendStringInfoChar(o->buf, '}');
}

static void
fp_int(FpOut *o, int v)
{
	appendStringInfo(o->buf, " %d", v);
}

/* A string, length-prefixed so that no quoting is needed; "~" for NULL. */
static void
fp_str(FpOut *o, const char *s)
{
	if (s == NULL)
		appendStringInfoString(o->buf, " ~");
	else
	{
		size_t		len = strlen(s);

		appendStringInfo(o->buf, " %zu:", len);
		appendBinaryStringInfo(o->buf, s, (int) len);
	}
}

#define FP_NODE(f)	fp_node(o, (const Node *) n->f)
#define FP_INT(f)	fp_int(o, (int) n->f)
#define FP_STR(f)	fp_str(o, n->f)

/*
 * Write the canonical form of a raw parse (sub)tree to o->buf.
 *
 * Every field that carries meaning is written, in declaration order; locations
 * and fields only the analyzer fills are not.  A node type not handled here
 * sets o->unsupported (the caller then serializes the statement by tokens).
 * In the first pass (o->collect) every A_Const outside type modifiers is
 * recorded in o->q->consts; in the second, constants marked FP_LOC_LITERAL
 * are written as "?".
 */
static void
fp_node(FpOut *o, const Node *node)
{
	ListCell   *lc;

	check_stack_depth();

	if (node == NULL)
	{
		appendStringInfoString(o->buf, " <>");
		return;
	}
	if (o->unsupported)
		return;

	switch (nodeTag(node))
	{
		case T_List:
			appendStringInfoString(o->buf, " (");
			foreach(lc, (const List *) node)
				fp_node(o, lfirst(lc));
			appendStringInfoChar(o->buf, ')');
			break;
		case T_IntList:
			appendStringInfoString(o->buf, " (i");
			foreach(lc, (const List *) node)
				fp_int(o, lfirst_int(lc));
			appendStringInfoChar(o->buf, ')');
			break;
		case T_OidList:
			appendStringInfoString(o->buf, " (o");
			foreach(lc, (const List *) node)
				fp_int(o, (int) lfirst_oid(lc));
			appendStringInfoChar(o->buf, ')');
			break;

			/* value nodes */
		case T_Integer:
			appendStringInfo(o->buf, " i%d", intVal(node));
			break;
		case T_Float:
			appendStringInfoString(o->buf, " f");
			fp_str(o, castNode(Float, (Node *) node)->fval);
			break;
		case T_Boolean:
			appendStringInfo(o->buf, " b%d", (int) boolVal(node));
			break;
		case T_String:
			fp_str(o, strVal(node));
			break;
		case T_BitString:
			appendStringInfoString(o->buf, " x");
			fp_str(o, castNode(BitString, (Node *) node)->bsval);
			break;

			/* statements */
		case T_SelectStmt:
			{
				const SelectStmt *n = (const SelectStmt *) node;

				fp_tag(o, "SELECT");
				FP_NODE(distinctClause);
				FP_NODE(intoClause);
				FP_NODE(targetList);
				FP_NODE(fromClause);
				FP_NODE(whereClause);
				FP_NODE(groupClause);
				FP_INT(groupDistinct);
				FP_NODE(havingClause);
				FP_NODE(windowClause);
				FP_NODE(valuesLists);
				FP_NODE(sortClause);
				FP_NODE(limitOffset);
				FP_NODE(limitCount);
				FP_INT(limitOption);
				FP_NODE(lockingClause);
				FP_NODE(withClause);
				FP_INT(op);
				FP_INT(all);
				FP_NODE(larg);
				FP_NODE(rarg);
				fp_end(o);
			}
			break;
		case T_InsertStmt:
			{
				const InsertStmt *n = (const InsertStmt *) node;

				fp_tag(o, "INSERT");
				FP_NODE(relation);
				FP_NODE(cols);
				FP_NODE(selectStmt);
				FP_NODE(onConflictClause);
				FP_NODE(returningList);
				FP_NODE(withClause);
				FP_INT(override);
				fp_end(o);
			}
			break;
		case T_UpdateStmt:
			{
				const UpdateStmt *n = (const UpdateStmt *) node;

				fp_tag(o, "UPDATE");
				FP_NODE(relation);
				FP_NODE(targetList);
				FP_NODE(whereClause);
				FP_NODE(fromClause);
				FP_NODE(returningList);
				FP_NODE(withClause);
				fp_end(o);
			}
			break;
		case T_DeleteStmt:
			{
				const DeleteStmt *n = (const DeleteStmt *) node;

				fp_tag(o, "DELETE");
				FP_NODE(relation);
				FP_NODE(usingClause);
				FP_NODE(whereClause);
				FP_NODE(returningList);
				FP_NODE(withClause);
				fp_end(o);
			}
			break;
		case T_MergeStmt:
			{
				const MergeStmt *n = (const MergeStmt *) node;

				fp_tag(o, "MERGE");
				FP_NODE(relation);
				FP_NODE(sourceRelation);
				FP_NODE(joinCondition);
				FP_NODE(mergeWhenClauses);
				FP_NODE(withClause);
				fp_end(o);
			}
			break;

			/* clauses */
		case T_MergeWhenClause:
			{
				const MergeWhenClause *n = (const MergeWhenClause *) node;

				fp_tag(o, "WHEN");
				FP_INT(matched);
				FP_INT(commandType);
				FP_INT(override);
				FP_NODE(condition);
				FP_NODE(targetList);
				FP_NODE(values);
				fp_end(o);
			}
			break;
		case T_OnConflictClause:
			{
				const OnConflictClause *n = (const OnConflictClause *) node;

				fp_tag(o, "ONCONFLICT");
				FP_INT(action);
				FP_NODE(infer);
				FP_NODE(targetList);
				FP_NODE(whereClause);
				fp_end(o);
			}
			break;
		case T_InferClause:
			{
				const InferClause *n = (const InferClause *) node;

				fp_tag(o, "INFER");
				FP_NODE(indexElems);
				FP_NODE(whereClause);
				FP_STR(conname);
				fp_end(o);
			}
			break;
		case T_IndexElem:
			{
				const IndexElem *n = (const IndexElem *) node;

				fp_tag(o, "INDEXELEM");
				FP_STR(name);
				FP_NODE(expr);
				FP_STR(indexcolname);
				FP_NODE(collation);
				FP_NODE(opclass);
				FP_NODE(opclassopts);
				FP_INT(ordering);
				FP_INT(nulls_ordering);
				fp_end(o);
			}
			break;
		case T_WithClause:
			{
				const WithClause *n = (const WithClause *) node;

				fp_tag(o, "WITH");
				FP_NODE(ctes);
				FP_INT(recursive);
				fp_end(o);
			}
			break;
		case T_CommonTableExpr:
			{
				const CommonTableExpr *n = (const CommonTableExpr *) node;

				fp_tag(o, "CTE");
				FP_STR(ctename);
				FP_NODE(aliascolnames);
				FP_INT(ctematerialized);
				FP_NODE(ctequery);
				FP_NODE(search_clause);
				FP_NODE(cycle_clause);
				fp_end(o);
			}
			break;
		case T_CTESearchClause:
			{
				const CTESearchClause *n = (const CTESearchClause *) node;

				fp_tag(o, "SEARCH");
				FP_NODE(search_col_list);
				FP_INT(search_breadth_first);
				FP_STR(search_seq_column);
				fp_end(o);
			}
			break;
		case T_CTECycleClause:
			{
				const CTECycleClause *n = (const CTECycleClause *) node;

				fp_tag(o, "CYCLE");
				FP_NODE(cycle_col_list);
				FP_STR(cycle_mark_column);
				FP_NODE(cycle_mark_value);
				FP_NODE(cycle_mark_default);
				FP_STR(cycle_path_column);
				fp_end(o);
			}
			break;
		case T_IntoClause:
			{
				const IntoClause *n = (const IntoClause *) node;

				fp_tag(o, "INTO");
				FP_NODE(rel);
				FP_NODE(colNames);
				FP_STR(accessMethod);
				FP_NODE(options);
				FP_INT(onCommit);
				FP_STR(tableSpaceName);
				FP_NODE(viewQuery);
				FP_INT(skipData);
				fp_end(o);
			}
			break;
		case T_LockingClause:
			{
				const LockingClause *n = (const LockingClause *) node;

				fp_tag(o, "LOCKING");
				FP_NODE(lockedRels);
				FP_INT(strength);
				FP_INT(waitPolicy);
				fp_end(o);
			}
			break;
		case T_SortBy:
			{
				const SortBy *n = (const SortBy *) node;

				fp_tag(o, "SORTBY");
				FP_NODE(node);
				FP_INT(sortby_dir);
				FP_INT(sortby_nulls);
				FP_NODE(useOp);
				fp_end(o);
			}
			break;
		case T_WindowDef:
			{
				const WindowDef *n = (const WindowDef *) node;

				fp_tag(o, "WINDOW");
				FP_STR(name);
				FP_STR(refname);
				FP_NODE(partitionClause);
				FP_NODE(orderClause);
				FP_INT(frameOptions);
				FP_NODE(startOffset);
				FP_NODE(endOffset);
				fp_end(o);
			}
			break;
		case T_GroupingSet:
			{
				const GroupingSet *n = (const GroupingSet *) node;

				fp_tag(o, "GROUPINGSET");
				FP_INT(kind);
				FP_NODE(content);
				fp_end(o);
			}
			break;
		case T_ResTarget:
			{
				const ResTarget *n = (const ResTarget *) node;

				fp_tag(o, "RESTARGET");
				FP_STR(name);
				FP_NODE(indirection);
				FP_NODE(val);
				fp_end(o);
			}
			break;
		case T_MultiAssignRef:
			{
				const MultiAssignRef *n = (const MultiAssignRef *) node;

				fp_tag(o, "MULTIASSIGN");
				FP_NODE(source);
				FP_INT(colno);
				FP_INT(ncolumns);
				fp_end(o);
			}
			break;
		case T_DefElem:
			{
				const DefElem *n = (const DefElem *) node;

				fp_tag(o, "DEFELEM");
				FP_STR(defnamespace);
				FP_STR(defname);
				FP_NODE(arg);
				FP_INT(defaction);
				fp_end(o);
			}
			break;

			/* FROM items */
		case T_RangeVar:
			{
				const RangeVar *n = (const RangeVar *) node;

				fp_tag(o, "RANGEVAR");
				FP_STR(catalogname);
				FP_STR(schemaname);
				FP_STR(relname);
				FP_INT(inh);
				FP_INT(relpersistence);
				FP_NODE(alias);
				fp_end(o);
			}
			break;
		case T_Alias:
			{
				const Alias *n = (const Alias *) node;

				fp_tag(o, "ALIAS");
				FP_STR(aliasname);
				FP_NODE(colnames);
				fp_end(o);
			}
			break;
		case T_JoinExpr:
			{
				const JoinExpr *n = (const JoinExpr *) node;

				fp_tag(o, "JOIN");
				FP_INT(jointype);
				FP_INT(isNatural);
				FP_NODE(larg);
				FP_NODE(rarg);
				FP_NODE(usingClause);
				FP_NODE(join_using_alias);
				FP_NODE(quals);
				FP_NODE(alias);
				fp_end(o);
			}
			break;
		case T_RangeSubselect:
			{
				const RangeSubselect *n = (const RangeSubselect *) node;

				fp_tag(o, "RANGESUBSELECT");
				FP_INT(lateral);
				FP_NODE(subquery);
				FP_NODE(alias);
				fp_end(o);
			}
			break;
		case T_RangeFunction:
			{
				const RangeFunction *n = (const RangeFunction *) node;

				fp_tag(o, "RANGEFUNCTION");
				FP_INT(lateral);
				FP_INT(ordinality);
				FP_INT(is_rowsfrom);
				FP_NODE(functions);
				FP_NODE(alias);
				FP_NODE(coldeflist);
				fp_end(o);
			}
			break;
		case T_RangeTableSample:
			{
				const RangeTableSample *n = (const RangeTableSample *) node;

				fp_tag(o, "RANGETABLESAMPLE");
				FP_NODE(relation);
				FP_NODE(method);
				FP_NODE(args);
				FP_NODE(repeatable);
				fp_end(o);
			}
			break;
		case T_RangeTableFunc:
			{
				const RangeTableFunc *n = (const RangeTableFunc *) node;

				fp_tag(o, "RANGETABLEFUNC");
				FP_INT(lateral);
				FP_NODE(docexpr);
				FP_NODE(rowexpr);
				FP_NODE(namespaces);
				FP_NODE(columns);
				FP_NODE(alias);
				fp_end(o);
			}
			break;
		case T_RangeTableFuncCol:
			{
				const RangeTableFuncCol *n = (const RangeTableFuncCol *) node;

				fp_tag(o, "RANGETABLEFUNCCOL");
				FP_STR(colname);
				FP_NODE(typeName);
				FP_INT(for_ordinality);
				FP_INT(is_not_null);
				FP_NODE(colexpr);
				FP_NODE(coldefexpr);
				fp_end(o);
			}
			break;
		case T_ColumnDef:
			{
				const ColumnDef *n = (const ColumnDef *) node;

				/* as found in a column definition list of a FROM function */
				fp_tag(o, "COLUMNDEF");
				FP_STR(colname);
				FP_NODE(typeName);
				FP_STR(compression);
				FP_INT(is_not_null);
				FP_NODE(raw_default);
				FP_NODE(collClause);
				FP_NODE(constraints);
				FP_NODE(fdwoptions);
				fp_end(o);
			}
			break;
		case T_TypeName:
			{
				const TypeName *n = (const TypeName *) node;

				fp_tag(o, "TYPENAME");
				FP_NODE(names);
				FP_INT(typeOid);
				FP_INT(setof);
				FP_INT(pct_type);
				/* varchar(10) is another type than varchar(20) */
				o->verbatim++;
				FP_NODE(typmods);
				o->verbatim--;
				FP_INT(typemod);
				FP_NODE(arrayBounds);
				fp_end(o);
			}
			break;

			/* expressions */
		case T_A_Const:
			{
				A_Const    *n = (A_Const *) node;

				if (o->collect && o->verbatim == 0)
				{
					FpQuery    *q = o->q;

					if (q->nconsts >= q->maxconsts)
					{
						q->maxconsts *= 2;
						q->consts = repalloc(q->consts,
											 sizeof(FpConst) * q->maxconsts);
					}
					q->consts[q->nconsts].node = n;
					q->consts[q->nconsts].location = n->location;
					q->consts[q->nconsts].start = -1;
					q->consts[q->nconsts].end = -1;
					q->nconsts++;
				}
				if (n->location == FP_LOC_LITERAL)
					appendStringInfoString(o->buf, " ?");
				else if (n->isnull)
					appendStringInfoString(o->buf, " {CONST null}");
				else
				{
					fp_tag(o, "CONST");
					fp_node(o, &n->val.node);
					fp_end(o);
				}
			}
			break;
		case T_ParamRef:
			appendStringInfo(o->buf, " $%d", ((const ParamRef *) node)->number);
			break;
		case T_ColumnRef:
			{
				const ColumnRef *n = (const ColumnRef *) node;

				fp_tag(o, "COLUMNREF");
				FP_NODE(fields);
				fp_end(o);
			}
			break;
		case T_A_Star:
			appendStringInfoString(o->buf, " *");
			break;
		case T_A_Expr:
			{
				const A_Expr *n = (const A_Expr *) node;

				fp_tag(o, "AEXPR");
				FP_INT(kind);
				FP_NODE(name);
				FP_NODE(lexpr);
				if (n->kind == AEXPR_IN && n->rexpr && IsA(n->rexpr, List))
					fp_const_list(o, (const List *) n->rexpr);
				else
					FP_NODE(rexpr);
				fp_end(o);
			}
			break;
		case T_A_ArrayExpr:
			{
				const A_ArrayExpr *n = (const A_ArrayExpr *) node;

				fp_tag(o, "ARRAY");
				fp_const_list(o, n->elements);
				fp_end(o);
			}
			break;
		case T_A_Indices:
			{
				const A_Indices *n = (const A_Indices *) node;

				fp_tag(o, "INDICES");
				FP_INT(is_slice);
				FP_NODE(lidx);
				FP_NODE(uidx);
				fp_end(o);
			}
			break;
		case T_A_Indirection:
			{
				const A_Indirection *n = (const A_Indirection *) node;

				fp_tag(o, "INDIRECTION");
				FP_NODE(arg);
				FP_NODE(indirection);
				fp_end(o);
			}
			break;
		case T_FuncCall:
			{
				const FuncCall *n = (const FuncCall *) node;

				fp_tag(o, "FUNCCALL");
				FP_NODE(funcname);
				FP_NODE(args);
				FP_NODE(agg_order);
				FP_NODE(agg_filter);
				FP_NODE(over);
				FP_INT(agg_within_group);
				FP_INT(agg_star);
				FP_INT(agg_distinct);
				FP_INT(func_variadic);
				FP_INT(funcformat);
				fp_end(o);
			}
			break;
		case T_NamedArgExpr:
			{
				const NamedArgExpr *n = (const NamedArgExpr *) node;

				fp_tag(o, "NAMEDARG");
				FP_NODE(arg);
				FP_STR(name);
				FP_INT(argnumber);
				fp_end(o);
			}
			break;
		case T_TypeCast:
			{
				const TypeCast *n = (const TypeCast *) node;

				fp_tag(o, "TYPECAST");
				FP_NODE(arg);
				FP_NODE(typeName);
				fp_end(o);
			}
			break;
		case T_CollateClause:
			{
				const CollateClause *n = (const CollateClause *) node;

				fp_tag(o, "COLLATE");
				FP_NODE(arg);
				FP_NODE(collname);
				fp_end(o);
			}
			break;
		case T_BoolExpr:
			{
				const BoolExpr *n = (const BoolExpr *) node;

				fp_tag(o, "BOOLEXPR");
				FP_INT(boolop);
				FP_NODE(args);
				fp_end(o);
			}
			break;
		case T_NullTest:
			{
				const NullTest *n = (const NullTest *) node;

				fp_tag(o, "NULLTEST");
				FP_NODE(arg);
				FP_INT(nulltesttype);
				fp_end(o);
			}
			break;
		case T_BooleanTest:
			{
				const BooleanTest *n = (const BooleanTest *) node;

				fp_tag(o, "BOOLEANTEST");
				FP_NODE(arg);
				FP_INT(booltesttype);
				fp_end(o);
			}
			break;
		case T_SubLink:
			{
				const SubLink *n = (const SubLink *) node;

				fp_tag(o, "SUBLINK");
				FP_INT(subLinkType);
				FP_NODE(testexpr);
				FP_NODE(operName);
				FP_NODE(subselect);
				fp_end(o);
			}
			break;
		case T_CaseExpr:
			{
				const CaseExpr *n = (const CaseExpr *) node;

				fp_tag(o, "CASE");
				FP_NODE(arg);
				FP_NODE(args);
				FP_NODE(defresult);
				fp_end(o);
			}
			break;
		case T_CaseWhen:
			{
				const CaseWhen *n = (const CaseWhen *) node;

				fp_tag(o, "WHEN");
				FP_NODE(expr);
				FP_NODE(result);
				fp_end(o);
			}
			break;
		case T_RowExpr:
			{
				const RowExpr *n = (const RowExpr *) node;

				fp_tag(o, "ROW");
				FP_NODE(args);
				FP_INT(row_format);
				FP_NODE(colnames);
				fp_end(o);
			}
			break;
		case T_CoalesceExpr:
			{
				const CoalesceExpr *n = (const CoalesceExpr *) node;

				fp_tag(o, "COALESCE");
				FP_NODE(args);
				fp_end(o);
			}
			break;
		case T_MinMaxExpr:
			{
				const MinMaxExpr *n = (const MinMaxExpr *) node;

				fp_tag(o, "MINMAX");
				FP_INT(op);
				FP_NODE(args);
				fp_end(o);
			}
			break;
		case T_SQLValueFunction:
			{
				const SQLValueFunction *n = (const SQLValueFunction *) node;

				fp_tag(o, "SQLVALUEFUNCTION");
				FP_INT(op);
				FP_INT(typmod);
				fp_end(o);
			}
			break;
		case T_XmlExpr:
			{
				const XmlExpr *n = (const XmlExpr *) node;

				fp_tag(o, "XMLEXPR");
				FP_INT(op);
				FP_STR(name);
				FP_NODE(named_args);
				FP_NODE(arg_names);
				FP_NODE(args);
				FP_INT(xmloption);
				fp_end(o);
			}
			break;
		case T_XmlSerialize:
			{
				const XmlSerialize *n = (const XmlSerialize *) node;

				fp_tag(o, "XMLSERIALIZE");
				FP_INT(xmloption);
				FP_NODE(expr);
				FP_NODE(typeName);
				fp_end(o);
			}
			break;
		case T_GroupingFunc:
			{
				const GroupingFunc *n = (const GroupingFunc *) node;

				fp_tag(o, "GROUPING");
				FP_NODE(args);
				fp_end(o);
			}
			break;
		case T_SetToDefault:
			appendStringInfoString(o->buf, " {DEFAULT}");
			break;
		case T_CurrentOfExpr:
			{
				const CurrentOfExpr *n = (const CurrentOfExpr *) node;

				fp_tag(o, "CURRENTOF");
				FP_STR(cursor_name);
				FP_INT(cursor_param);
				fp_end(o);
			}
			break;
		default:
			/* the statement will be serialized by tokens */
			o->unsupported = true;
			break;
	}
}

/*
 * Is this expression a constant for IN-list and ARRAY[] folding: a literal,
 * possibly under casts, or an ARRAY[] or ROW() made of such constants?
 * Valid in the second pass only (literals are marked by then).
 */
static bool
fp_is_constant(const Node *node)
{
	ListCell   *lc;

	if (node == NULL)
		return false;

	switch (nodeTag(node))
	{
		case T_A_Const:
			return ((const A_Const *) node)->location == FP_LOC_LITERAL;
		case T_TypeCast:
			return fp_is_constant(((const TypeCast *) node)->arg);
		case T_A_ArrayExpr:
			foreach(lc, ((const A_ArrayExpr *) node)->elements)
			{
				if (!fp_is_constant(lfirst(lc)))
					return false;
			}
			return true;
		case T_RowExpr:
			if (((const RowExpr *) node)->args == NIL)
				return false;
			foreach(lc, ((const RowExpr *) node)->args)
			{
				if (!fp_is_constant(lfirst(lc)))
					return false;
			}
			return true;
		default:
			return false;
	}
}

/*
 * Write the element list of an IN (...) or ARRAY[...].  When every element
 * is a constant, write the distinct element forms only, in order of first
 * appearance, so that the number of constants does not count: IN (1, 2, 3)
 * and IN (7) are both " [ ?]".
 */
static void
fp_const_list(FpOut *o, const List *list)
{
	StringInfo	outer = o->buf;
	StringInfoData elem;
	List	   *seen = NIL;
	ListCell   *lc;

	if (o->collect || list == NIL)
	{
		fp_node(o, (const Node *) list);
		return;
	}
	foreach(lc, list)
	{
		if (!fp_is_constant(lfirst(lc)))
		{
			fp_node(o, (const Node *) list);
			return;
		}
	}

	initStringInfo(&elem);
	appendStringInfoString(outer, " [");
	foreach(lc, list)
	{
		ListCell   *lc2;
		bool		dup = false;

		resetStringInfo(&elem);
		o->buf = &elem;
		fp_node(o, lfirst(lc));
		o->buf = outer;

		foreach(lc2, seen)
		{
			if (strcmp((const char *) lfirst(lc2), elem.data) == 0)
			{
				dup = true;
				break;
			}
		}
		if (!dup)
		{
			appendStringInfoString(outer, elem.data);
			seen = lappend(seen, pstrdup(elem.data));
		}
	}
	appendStringInfoChar(outer, ']');
	list_free_deep(seen);
	pfree(elem.data);
}

/*
 * Write the token stream of a statement (see the file header).
 */
static void
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
				appendStringInfo(buf, " $%d", t->ival);
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

/*
 * Compute the 8-byte fingerprint of a query (see the file header).
 * Allocates in CurrentMemoryContext.
 */
static void
fp_digest(const char *query, uint8 digest[8])
{
	FpQuery		q;
	StringInfoData buf;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	fp_analyze(query, &q);

	initStringInfo(&buf);
	appendStringInfoString(&buf, FP_FORMAT_TAG);
	for (int i = 0; i < q.nstmts; i++)
	{
		FpStmt	   *st = &q.stmts[i];

		appendStringInfoChar(&buf, '\n');
		if (st->bytree)
		{
			FpOut		o;

			memset(&o, 0, sizeof(FpOut));
			o.buf = &buf;
			o.q = &q;
			fp_node(&o, st->raw->stmt);
			if (o.unsupported)
				elog(ERROR, "fingerprint: unexpected node in second pass");
		}
		else
			fp_tokens(&q, st, &buf);
	}

	if (EVP_Digest(buf.data, buf.len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
		mdlen < 8)
		elog(ERROR, "could not compute SHA-256 digest");
	memcpy(digest, md, 8);
}

/* A literal's byte range in the query text, for fp_normalize(). */
typedef struct FpSpan
{
	int			start;
	int			end;
} FpSpan;

static int
fp_span_cmp(const void *a, const void *b)
{
	int			sa = ((const FpSpan *) a)->start;
	int			sb = ((const FpSpan *) b)->start;

	return (sa > sb) - (sa < sb);
}

/*
 * The query with its literals replaced by $n (see the file header).
 * Allocates in CurrentMemoryContext.
 */
static char *
fp_normalize(const char *query)
{
	FpQuery		q;
	FpSpan	   *spans;
	int			nspans = 0;
	int			last = 0;
	int			param;
	StringInfoData buf;

	fp_analyze(query, &q);

	/* every token could be a literal, and so could every constant */
	spans = palloc(sizeof(FpSpan) * (q.ntokens + q.nconsts + 1));
	for (int i = 0; i < q.nconsts; i++)
	{
		if (q.consts[i].end >= 0)
		{
			spans[nspans].start = q.consts[i].start;
			spans[nspans].end = q.consts[i].end;
			nspans++;
		}
	}
	for (int s = 0; s < q.nstmts; s++)
	{
		const FpStmt *st = &q.stmts[s];

		if (st->bytree)
			continue;
		for (int i = 0; i < q.ntokens; i++)
		{
			int			lastok;

			if (q.tokens[i].start < st->start)
				continue;
			if (q.tokens[i].start >= st->end)
				break;
			lastok = fp_literal_last(&q, i, false);
			if (lastok >= 0)
			{
				spans[nspans].start = fp_literal_start(&q, i);
				spans[nspans].end = q.tokens[lastok].end;
				nspans++;
				i = lastok;
			}
		}
	}
	if (nspans > 1)
		qsort(spans, nspans, sizeof(FpSpan), fp_span_cmp);

	initStringInfo(&buf);
	param = q.max_param;
	for (int i = 0; i < nspans; i++)
	{
		if (spans[i].start < last)
			continue;			/* the same constant seen twice */
		appendBinaryStringInfo(&buf, query + last, spans[i].start - last);
		appendStringInfo(&buf, "$%d", ++param);
		last = spans[i].end;
	}
	appendBinaryStringInfo(&buf, query + last, q.len - last);

	return buf.data;
}

/*
 * Fingerprint of a query as a uint64 (the first 8 bytes of the digest, big
 * endian).  Raises 42601 on invalid SQL.  Allocates nothing that outlives
 * the call.
 */
uint64
pulse_fingerprint_u64(const char *query)
{
	MemoryContext ctx;
	MemoryContext oldctx;
	uint8		digest[8];
	uint64		result = 0;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "pulse fingerprint",
								ALLOCSET_DEFAULT_SIZES);
	oldctx = MemoryContextSwitchTo(ctx);
	fp_digest(query, digest);
	MemoryContextSwitchTo(oldctx);
	MemoryContextDelete(ctx);

	for (int i = 0; i < 8; i++)
		result = (result << 8) | digest[i];
	return result;
}

/*
 * Fingerprint of a query as 16 lowercase hex digits and a NUL, written to
 * out.  Raises 42601 on invalid SQL.
 */
void
pulse_fingerprint_text(const char *query, char out[PULSE_FINGERPRINT_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint64		fp = pulse_fingerprint_u64(query);

	for (int i = PULSE_FINGERPRINT_LEN - 1; i >= 0; i--)
	{
		out[i] = hex[fp & 0xf];
		fp >>= 4;
	}
	out[PULSE_FINGERPRINT_LEN] = '\0';
}

/*
 * pulse.fingerprint(query text) RETURNS text
 */
Datum
pulse_fingerprint(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		out[PULSE_FINGERPRINT_LEN + 1];

	pulse_fingerprint_text(query, out);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/*
 * pulse.normalize(query text) RETURNS text
 */
Datum
pulse_normalize(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext ctx;
	MemoryContext oldctx;
	char	   *normalized;
	text	   *result;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "pulse normalize",
								ALLOCSET_DEFAULT_SIZES);
	oldctx = MemoryContextSwitchTo(ctx);
	normalized = fp_normalize(query);
	MemoryContextSwitchTo(oldctx);
	result = cstring_to_text(normalized);
	MemoryContextDelete(ctx);

	PG_RETURN_TEXT_P(result);
}
