/*-------------------------------------------------------------------------
 *
 * page_result.c
 *		What a page returns, and what its cursors carry: the binding of the
 *		cursors, the key values in and out of them, and the jsonb result
 *		{"items": [...], "next_cursor": ..., "prev_cursor": ...}.
 *
 * A cursor is bound (cursor.c) to the exact text of the query, literal
 * values included, the canonical order, the arguments, the tenant, the
 * types of the keys and parameters and the tables the query reads.  Two
 * queries that differ only in a literal share a fingerprint but not their
 * cursors; a cursor issued before a key's type changed (ALTER TABLE) is
 * refused before its bytes are read, and so is one issued for the same
 * text under a search_path that named other tables.
 *
 * Key values are stored in the type's binary send form, so that a cursor
 * means the same whatever DateStyle, TimeZone or extra_float_digits the
 * session that decodes it uses; a type without binary I/O travels in its
 * text form.  Reading them back goes through the type's receive (or input)
 * function, which may raise anything on bytes it does not expect; any such
 * error becomes 22023 "invalid cursor", so that a client can always tell a
 * bad cursor from a failing query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "pulse.h"

void
pulse_page_binding(const PageQueryInfo *info, Jsonb *args, uint8 binding[8])
{
	char	   *args_text = JsonbToCString(NULL, &args->root, VARSIZE(args));

	pulse_cursor_binding(info->stmt, info->order_canon, args_text,
						 pulse_tenant ? pulse_tenant : "", info->signature,
						 binding);
}

/* The type's binary send (or receive) function; InvalidOid if it has none. */
static Oid
pr_binary_io(Oid type, bool receive)
{
	HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	Form_pg_type typ;
	Oid			fn;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for type %u", type);
	typ = (Form_pg_type) GETSTRUCT(tp);
	fn = receive ? typ->typreceive : typ->typsend;
	ReleaseSysCache(tp);
	return fn;
}

/*
 * A key value's bytes in a cursor: the type's binary send form; the text
 * form for the rare type that has no binary I/O.
 */
static void
pr_key_to_bytes(Oid type, Datum d, PulseCursorKey *key)
{
	Oid			sendfn = pr_binary_io(type, false);

	if (OidIsValid(sendfn))
	{
		bytea	   *b = OidSendFunctionCall(sendfn, d);

		key->len = VARSIZE(b) - VARHDRSZ;
		key->text = VARDATA(b);
	}
	else
	{
		Oid			outfn;
		bool		varlena;

		getTypeOutputInfo(type, &outfn, &varlena);
		key->text = OidOutputFunctionCall(outfn, d);
		key->len = strlen(key->text);
	}
}

/* The inverse of pr_key_to_bytes; raises what the type's function raises. */
static Datum
pr_key_from_bytes(Oid type, const PulseCursorKey *key)
{
	Oid			recvfn;
	Oid			ioparam;
	Datum		d;

	if (OidIsValid(pr_binary_io(type, true)))
	{
		StringInfoData buf;

		/* a copy: receive functions may scribble on their buffer */
		getTypeBinaryInputInfo(type, &recvfn, &ioparam);
		buf.data = palloc(key->len + 1);
		memcpy(buf.data, key->text, key->len);
		buf.data[key->len] = '\0';
		buf.len = key->len;
		buf.maxlen = key->len + 1;
		buf.cursor = 0;
		d = OidReceiveFunctionCall(recvfn, &buf, ioparam, -1);
		/* as exec_bind_message does: every byte must be consumed */
		if (buf.cursor != buf.len)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("incorrect binary data format")));
		return d;
	}
	else
	{
		Oid			infn;

		if (memchr(key->text, '\0', key->len) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("key value contains a NUL byte")));
		getTypeInputInfo(type, &infn, &ioparam);
		return OidInputFunctionCall(infn, pnstrdup(key->text, key->len), ioparam, -1);
	}
}

Datum
pulse_page_key_value(const PageQueryInfo *info, int i, const PulseCursorKey *key)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		d = (Datum) 0;

	PG_TRY();
	{
		d = pr_key_from_bytes(info->keytypes[i], key);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * The transaction is aborted by the error raised below, which
		 * releases whatever the receive function held; only cancellations
		 * and errors above ERROR go through unchanged.
		 */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->elevel > ERROR || edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid cursor: key \"%s\" is not a value of type %s",
						info->keys[i].name, format_type_be(info->keytypes[i])),
				 errdetail("%s", edata->message),
				 errhint("Start the walk again from the first page (cursor => NULL).")));
	}
	PG_END_TRY();
	return d;
}

/* Encodes a cursor from the key columns (2..n+1) of an SPI result row. */
static char *
pr_make_cursor(const PageQueryInfo *info, const uint8 binding[8],
			   bool backward, HeapTuple tup, TupleDesc desc)
{
	PulseCursorKey *keys = palloc0(sizeof(PulseCursorKey) * info->nkeys);

	for (int i = 0; i < info->nkeys; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, i + 2, &isnull);

		keys[i].isnull = isnull;
		if (!isnull)
			pr_key_to_bytes(info->keytypes[i], d, &keys[i]);
	}
	return pulse_cursor_encode(binding, backward, info->nkeys, keys);
}

void
pulse_page_json_key(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &v);
}

void
pulse_page_json_text(JsonbParseState **st, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

Jsonb *
pulse_page_result(const PageQueryInfo *info, const uint8 binding[8],
				  SPITupleTable *tt, int nitems, bool more, bool backward,
				  bool after_cursor)
{
	JsonbParseState *st = NULL;
	char	   *next_cursor = NULL;
	char	   *prev_cursor = NULL;
	int			first_row = backward ? nitems - 1 : 0;
	int			last_row = backward ? 0 : nitems - 1;

	/* rows come in reverse order for a backward page */
	if (nitems > 0)
	{
		if (backward)
		{
			next_cursor = pr_make_cursor(info, binding, false, tt->vals[last_row], tt->tupdesc);
			if (more)
				prev_cursor = pr_make_cursor(info, binding, true, tt->vals[first_row], tt->tupdesc);
		}
		else
		{
			if (more)
				next_cursor = pr_make_cursor(info, binding, false, tt->vals[last_row], tt->tupdesc);
			if (after_cursor)
				prev_cursor = pr_make_cursor(info, binding, true, tt->vals[first_row], tt->tupdesc);
		}
	}

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	pulse_page_json_key(&st, "items");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (int n = 0; n < nitems; n++)
	{
		int			r = backward ? nitems - 1 - n : n;
		bool		isnull;
		Datum		d = SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull);
		Jsonb	   *row = DatumGetJsonbP(d);
		JsonbValue	v;

		v.type = jbvBinary;
		v.val.binary.data = &row->root;
		v.val.binary.len = VARSIZE(row) - VARHDRSZ;
		pushJsonbValue(&st, WJB_ELEM, &v);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	pulse_page_json_key(&st, "next_cursor");
	pulse_page_json_text(&st, next_cursor);
	pulse_page_json_key(&st, "prev_cursor");
	pulse_page_json_text(&st, prev_cursor);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}
