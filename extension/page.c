/*-------------------------------------------------------------------------
 *
 * page.c
 *		Keyset ("seek") pagination: pulse.page().
 *
 * pulse.page(query, order_by, cursor, page_size, args) returns one page of
 * the caller's SELECT in the order order_by names, after (or, for a
 * backward cursor, before) the row the cursor stands for, as
 * {"items": [...], "next_cursor": ..., "prev_cursor": ...}.  This file only
 * puts the pieces together:
 *
 *	page_query.c	checks and analyses the query: parameter and key types
 *	page_nullable.c	proves which sort keys are never NULL
 *	page_sql.c		parses order_by, builds the keyset query
 *	page_cache.c	keeps the prepared keyset queries of this backend
 *	page_args.c		binds the args JSON array to the query's parameters
 *	page_result.c	cursor bindings and keys, the jsonb result
 *	explain_page.c	whether an index serves the order
 *	cursor.c		signs and checks cursor tokens (cursor_codec.c)
 *
 * A call prepares (or finds) the first-page variant of the query, which
 * tells the sort keys and the binding a cursor must carry; a cursor is
 * checked against that binding before anything in it is used, and then
 * picks the variant that seeks past its values (its direction and which of
 * its values are NULL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "pulse.h"

PG_FUNCTION_INFO_V1(pulse_page);

/* The arguments of one pulse.page call. */
typedef struct PageCall
{
	char	   *query;
	char	   *order_by;
	char	   *cursor;			/* NULL for the first page */
	int32		page_size;
	Jsonb	   *args;			/* checked JSON array */
} PageCall;

static void
page_read_call(FunctionCallInfo fcinfo, PageCall *call)
{
	pulse_page_require_arg(fcinfo, 0, "query");
	pulse_page_require_arg(fcinfo, 1, "order_by");
	pulse_page_require_arg(fcinfo, 3, "page_size");
	call->query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	call->order_by = text_to_cstring(PG_GETARG_TEXT_PP(1));
	call->cursor = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	call->page_size = PG_GETARG_INT32(3);
	call->args = pulse_page_check_args(PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4));
	if (call->page_size < 1 || call->page_size > PULSE_PAGE_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("page_size must be between 1 and %d, not %d",
						PULSE_PAGE_MAX_SIZE, call->page_size)));
}

/*
 * The variant of the page after call->cursor, with the cursor's key values
 * in values/nulls after the query's parameters.  binding is the one the
 * first-page variant gave; *backward receives the cursor's direction.
 * Caller is in SPI.
 */
static PageCacheEntry *
page_seek_entry(PageCall *call, const uint8 binding[8], int nkeys,
				Datum *values, char *nulls, bool *backward)
{
	PulseCursor cur;
	bool		nullmask[PULSE_PAGE_MAX_KEYS];
	PageCacheEntry *e;
	PageQueryInfo *info;
	uint8		again[8];

	pulse_cursor_decode(call->cursor, binding, nkeys, &cur);
	memset(nullmask, 0, sizeof(nullmask));
	for (int i = 0; i < nkeys; i++)
		nullmask[i] = cur.keys[i].isnull;
	e = pulse_page_cache_get(call->query, call->order_by,
							 JB_ROOT_COUNT(call->args), true, cur.backward,
							 nullmask, call->page_size + 1);
	info = e->info;

	/*
	 * This variant's analysis may be newer than the one the binding came
	 * from (a type changed in between): its key types must be the ones the
	 * cursor was issued for before its bytes are read as such.
	 */
	pulse_page_binding(info, call->args, again);
	if (memcmp(again, binding, sizeof(again)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid cursor: bound to another query"),
				 errdetail("The query's columns changed while the page was prepared.")));

	for (int i = 0; i < nkeys; i++)
	{
		int			p = info->nparams + i;

		nulls[p] = cur.keys[i].isnull ? 'n' : ' ';
		values[p] = cur.keys[i].isnull ? (Datum) 0 :
			pulse_page_key_value(info, i, &cur.keys[i]);
	}
	*backward = cur.backward;
	return e;
}

/*
 * pulse.page(query text, order_by text, cursor text DEFAULT NULL,
 *			  page_size int DEFAULT 50, args jsonb DEFAULT '[]') RETURNS jsonb
 */
Datum
pulse_page(PG_FUNCTION_ARGS)
{
	PageCall	call;
	PageCacheEntry *e;
	PageQueryInfo *info;
	bool		backward = false;
	uint8		binding[8];
	Datum	   *values;
	char	   *nulls;
	int			ret;
	uint64		nrows;
	int			nitems;
	Jsonb	   *result;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext spicxt;

	page_read_call(fcinfo, &call);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* The first-page variant tells the keys and the binding. */
	e = pulse_page_cache_get(call.query, call.order_by,
							 JB_ROOT_COUNT(call.args), false, false, NULL,
							 call.page_size + 1);
	info = e->info;
	pulse_page_binding(info, call.args, binding);
	values = palloc(sizeof(Datum) * (info->nparams + info->nkeys));
	nulls = palloc(sizeof(char) * (info->nparams + info->nkeys + 1));
	if (call.cursor != NULL)
	{
		e = page_seek_entry(&call, binding, info->nkeys, values, nulls,
							&backward);
		info = e->info;
	}
	pulse_page_bind_args(info, call.args, values, nulls);
	pulse_page_check_index(e);

	ret = pulse_page_cache_execute(e, values, nulls, call.page_size + 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pulse.page query failed: %s", SPI_result_code_string(ret));
	nrows = SPI_processed;
	nitems = nrows > (uint64) call.page_size ? call.page_size : (int) nrows;

	/* The cursors and the result are built in the caller's memory context. */
	spicxt = MemoryContextSwitchTo(callcxt);
	result = pulse_page_result(info, binding, SPI_tuptable, nitems,
							   nrows > (uint64) call.page_size, backward,
							   call.cursor != NULL);
	MemoryContextSwitchTo(spicxt);

	SPI_finish();
	PG_RETURN_JSONB_P(result);
}
