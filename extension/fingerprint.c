/*-------------------------------------------------------------------------
 *
 * fingerprint.c
 *		Query fingerprints and normalized query text: pulse.fingerprint(),
 *		pulse.normalize(), and the C entry points page.c uses.
 *
 * A fingerprint identifies the structure of a query: it is the same for
 * queries that differ only in literal values or parameters, whitespace,
 * comments, keyword case, keyword synonyms the grammar does not keep apart,
 * or the number of constants in an IN (...) list or ARRAY[...], and it
 * differs when tables, columns, operators, functions, casts, aliases or
 * clauses differ.  It is computed from the raw parse tree (raw_parser(), so
 * names rather than OIDs: no catalog access, the tables need not exist):
 *
 * 1. The query is parsed with RAW_PARSE_DEFAULT.  Invalid SQL raises the
 *    parser's own error (SQLSTATE 42601), its cursor position moved onto the
 *    query text (internalerrquery) rather than onto the calling statement.
 *    A query without any statement raises 22023.  The core scanner is run
 *    over the text too (fp_tokens.c), for the tokens the tree points at.
 *
 * 2. Each statement is written into a canonical text by the raw tree walker
 *    (fp_walk.c for queries and expressions, fp_utility.c for the utility
 *    statements it knows): node tags, scalar fields and names, never
 *    pointers nor locations, so that two texts with the same raw tree have
 *    the same canonical form.  On the way:
 *    - a constant (A_Const) is a literal when the scanner found a literal
 *      token where it starts: a string of any kind (E'', $$..$$, U&''
 *      [UESCAPE ''], B'', X''), a number, a negative number ('-' folded into
 *      the constant by the grammar), or TRUE, FALSE or NULL.  A literal and a
 *      $n parameter are both written "?".  Constants the grammar makes up
 *      from keywords or identifiers (LIMIT ALL, EXTRACT(year FROM ...), SET
 *      x = on, FETCH FIRST ROW ONLY) and type modifiers (varchar(10),
 *      interval day) are structure.  Strings the grammar keeps as names or
 *      option values rather than constants (COMMENT ... IS 'text', a
 *      function body, COPY's file name, WITH (fillfactor = 70)) are
 *      structure too: the tree cannot tell them from identifiers.
 *    - an IN list or ARRAY[] whose elements are all constants (literals or
 *      parameters, possibly under casts, in nested arrays or in ROW()s) is
 *      written as the list of its distinct element shapes, so its length
 *      does not count, and x IN (...) is written as x = ANY (ARRAY[...])
 *      (x NOT IN as x <> ALL), the form PostgreSQL 18's pg_stat_statements
 *      squashes too.  The number of rows of a VALUES list does count.
 *    A statement with a node the walker does not know (a utility statement
 *    of a kind fp_utility.c does not list) is written as its token stream
 *    instead (fp_tokens.c): keywords in their canonical lower case,
 *    identifiers as the scanner returns them (down-cased unless quoted),
 *    operators and punctuation, and each literal token or parameter as "?".
 *    There IN lists are not squashed and TRUE, FALSE and NULL stay keywords.
 *
 * 3. A query with several statements is fingerprinted as a whole: the
 *    canonical texts of its statements, in order, after the format tag
 *    FP_FORMAT_TAG.  A trailing semicolon does not count.
 *
 * 4. The fingerprint is the first 8 bytes of the SHA-256 digest (OpenSSL
 *    EVP_Digest) of that text, as a big-endian uint64 or as 16 lowercase hex
 *    digits.  It does not depend on the server, the session, memory layout
 *    or the catalog, so it is stable across restarts and servers running the
 *    same PostgreSQL major version (another major version may parse
 *    differently).  FP_FORMAT_TAG is changed whenever the canonical form
 *    changes, so that a change of algorithm changes every fingerprint.
 *
 * pulse.normalize() (normalize.c) writes the query with its literals
 * replaced by $n where the grammar accepts a parameter, so that its output
 * always parses and fingerprint(normalize(q)) = fingerprint(q).
 *
 * Nothing here touches shared state: all work is done in a private memory
 * context that is deleted before returning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "fp_int.h"
#include "pulse.h"

PG_FUNCTION_INFO_V1(pulse_fingerprint);
PG_FUNCTION_INFO_V1(pulse_normalize);

static void fp_digest(const char *query, uint8 digest[8]);

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

	initStringInfo(&buf);
	q.want_edits = false;
	fp_build(query, &q, &buf);

	if (EVP_Digest(buf.data, buf.len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
		mdlen < 8)
		elog(ERROR, "could not compute SHA-256 digest");
	memcpy(digest, md, 8);
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
