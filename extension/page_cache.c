/*-------------------------------------------------------------------------
 *
 * page_cache.c
 *		The backend-local cache of prepared pulse.page plans, and
 *		pulse.page_cache_stats().
 *
 * A page's plan depends on the query text, the search_path it is resolved
 * in, the order, the number of arguments, whether it seeks past a cursor,
 * the direction, which of the cursor's key values are NULL and the page
 * size.  Each such variant is
 * prepared once (SPI_prepare + SPI_keepplan) together with the analysis of
 * the query (page_query.c) and kept in a hash table keyed by a 64-bit hash
 * of all of these; the full key is kept too, to rule out collisions.
 *
 * Memory: the table and its entries live in their own context under
 * CacheMemoryContext, for the life of the backend; each entry's contents in
 * a child context, so that an entry is replaced or dropped as a whole.  A
 * full cache (PAGE_CACHE_MAX entries) is dropped and started over.
 *
 * Invalidation: a relcache invalidation of a relation an entry's plan reads
 * (or of all relations) marks the entry stale: a column's type or NOT NULL
 * constraint may have changed under the cached analysis.  The callback may
 * fire while a plan runs, so it only marks; a stale entry is prepared again
 * at its next use, unless a pulse.page call is under way in this backend
 * (a nested call, from a query a page runs), which may still use it.  On a
 * hit, the relations of the entry are locked (AccessShareLock, as the
 * executor would) before the entry is trusted, which processes pending
 * invalidations and keeps the analysis true until the transaction ends, as
 * the plan cache of PostgreSQL does (AcquirePlannerLocks).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "access/htup_details.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/plancache.h"

#include "pulse.h"

#define PAGE_CACHE_MAX		256

PG_FUNCTION_INFO_V1(pulse_page_cache_stats);

static MemoryContext pc_cxt = NULL;
static HTAB *pc_table = NULL;
static uint64 pc_hits = 0;
static uint64 pc_prepares = 0;
static bool pc_callback_registered = false;
static int	pc_depth = 0;			/* pulse.page executions under way */

/* Relcache callback: marks the entries reading relid (all for 0) stale. */
static void
pc_mark_stale(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	PageCacheEntry *e;

	if (pc_table == NULL)
		return;
	hash_seq_init(&status, pc_table);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(relid))
			e->stale = true;
		else
			for (int i = 0; i < e->nrelids; i++)
				if (e->relids[i] == relid)
					e->stale = true;
	}
}

/* Frees every cached plan and the cache.  Caller ensures none is in use. */
static void
pc_drop(void)
{
	if (pc_table != NULL)
	{
		HASH_SEQ_STATUS status;
		PageCacheEntry *e;

		hash_seq_init(&status, pc_table);
		while ((e = hash_seq_search(&status)) != NULL)
		{
			if (e->plan)
				SPI_freeplan(e->plan);
		}
	}
	if (pc_cxt != NULL)
		MemoryContextDelete(pc_cxt);
	pc_cxt = NULL;
	pc_table = NULL;
}

static void
pc_init(void)
{
	HASHCTL		ctl;

	if (pc_table != NULL)
		return;
	if (!pc_callback_registered)
	{
		CacheRegisterRelcacheCallback(pc_mark_stale, (Datum) 0);
		pc_callback_registered = true;
	}
	/* Lives as long as the backend, or until the cache is full. */
	pc_cxt = AllocSetContextCreate(CacheMemoryContext, "pulse page cache",
								   ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(PageCacheEntry);
	ctl.hcxt = pc_cxt;
	pc_table = hash_create("pulse page cache", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* A copy of info in the current memory context. */
static PageQueryInfo *
pc_copy_info(const PageQueryInfo *info)
{
	PageQueryInfo *c = palloc0(sizeof(PageQueryInfo));
	int			nkeys = info->nkeys;
	ListCell   *lc;

	*c = *info;
	c->stmt = pstrdup(info->stmt);
	c->order_canon = pstrdup(info->order_canon);
	c->signature = pstrdup(info->signature);
	c->paramtypes = palloc(sizeof(Oid) * Max(info->nparams, 1));
	memcpy(c->paramtypes, info->paramtypes, sizeof(Oid) * info->nparams);
	c->keys = palloc(sizeof(PageKey) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		c->keys[i] = info->keys[i];
		c->keys[i].name = pstrdup(info->keys[i].name);
	}
	c->keytypes = palloc(sizeof(Oid) * nkeys);
	memcpy(c->keytypes, info->keytypes, sizeof(Oid) * nkeys);
	c->keynotnull = palloc(sizeof(bool) * nkeys);
	memcpy(c->keynotnull, info->keynotnull, sizeof(bool) * nkeys);
	c->eq_columns = NIL;
	foreach(lc, info->eq_columns)
		c->eq_columns = lappend(c->eq_columns, pstrdup(lfirst(lc)));
	return c;
}

/*
 * Locks the relations e's plan reads, as the executor will, and says
 * whether e is still valid: taking a lock processes the invalidations
 * committed since, and holding it keeps them from coming until the end of
 * the transaction.
 */
static bool
pc_lock_and_check(PageCacheEntry *e)
{
	for (int i = 0; i < e->nrelids; i++)
		LockRelationOid(e->relids[i], AccessShareLock);
	return !e->stale;
}

/* Analyses the query and prepares one variant: the new entry's contents. */
static void
pc_prepare(PageCacheEntry *tmp, const char *key, const char *query,
		   const char *order_by, int nargs, bool with_cursor, bool reverse,
		   const bool *nullmask, int limit)
{
	PageQueryInfo *info;
	PageKey    *keys;
	int			nkeys;
	Oid		   *argtypes;
	char	   *sql;
	SPIPlanPtr	plan;
	MemoryContext old;
	CachedPlanSource *src;
	ListCell   *lc;

	keys = pulse_page_parse_order(order_by, &nkeys);
	info = pulse_page_analyze(query, keys, nkeys, nargs);
	argtypes = palloc(sizeof(Oid) * (info->nparams + nkeys));
	memcpy(argtypes, info->paramtypes, sizeof(Oid) * info->nparams);
	memcpy(argtypes + info->nparams, info->keytypes, sizeof(Oid) * nkeys);
	sql = pulse_page_build_sql(info, with_cursor, reverse, nullmask, limit);
	plan = SPI_prepare(sql, with_cursor ? info->nparams + nkeys : info->nparams,
					   argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for pulse.page: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");

	/* a full cache starts over, unless an outer page still uses it */
	pc_init();
	if (hash_get_num_entries(pc_table) >= PAGE_CACHE_MAX && pc_depth == 0)
	{
		pc_drop();
		pc_init();
	}

	/*
	 * Build the entry's contents in a context of its own first, so that an
	 * error leaves no half-made entry in the table.
	 */
	memset(tmp, 0, sizeof(*tmp));
	tmp->cxt = AllocSetContextCreate(pc_cxt, "pulse page cache entry",
									 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(tmp->cxt);
	tmp->key = pstrdup(key);
	tmp->sql = pstrdup(sql);
	tmp->sort_state = -1;
	tmp->info = pc_copy_info(info);
	src = linitial(SPI_plan_get_plan_sources(plan));
	tmp->relids = palloc(sizeof(Oid) * Max(list_length(src->relationOids), 1));
	foreach(lc, src->relationOids)
		tmp->relids[tmp->nrelids++] = lfirst_oid(lc);
	MemoryContextSwitchTo(old);
	tmp->plan = plan;
}

PageCacheEntry *
pulse_page_cache_get(const char *query, const char *order_by, int nargs,
					 bool with_cursor, bool reverse, const bool *nullmask,
					 int limit)
{
	StringInfoData key;
	uint64		hash;
	PageCacheEntry *e;
	PageCacheEntry tmp;
	bool		found;
	ListCell   *lc;

	/*
	 * The same text may name other tables under another search_path: the
	 * path is part of the key (PostgreSQL's plan cache would only re-analyse
	 * the plan, not redo this file's analysis of it).
	 */
	initStringInfo(&key);
	foreach(lc, fetch_search_path(true))
		appendStringInfo(&key, "%u,", lfirst_oid(lc));
	appendStringInfo(&key, "|%d|%d|%d|%d|", nargs, limit, with_cursor, reverse);
	if (with_cursor)
		for (int i = 0; nullmask && i < PULSE_PAGE_MAX_KEYS; i++)
			appendStringInfoChar(&key, nullmask[i] ? 'N' : 'v');
	appendStringInfo(&key, "|%zu:%s|%s", strlen(order_by), order_by, query);
	hash = DatumGetUInt64(hash_any_extended((unsigned char *) key.data, key.len, 0));

	pc_init();
	e = hash_search(pc_table, &hash, HASH_FIND, NULL);
	if (e != NULL && strcmp(e->key, key.data) == 0 &&
		(pc_lock_and_check(e) || pc_depth > 0))
	{
		pc_hits++;
		return e;
	}
	pc_prepares++;

	/* Not cached, or stale: analyse the query and prepare this variant. */
	pc_prepare(&tmp, key.data, query, order_by, nargs, with_cursor, reverse,
			   nullmask, limit);
	e = hash_search(pc_table, &hash, HASH_ENTER, &found);
	if (found)
	{
		SPI_freeplan(e->plan);
		MemoryContextDelete(e->cxt);
	}
	tmp.hash = hash;
	*e = tmp;
	return e;
}

int
pulse_page_cache_execute(PageCacheEntry *e, Datum *values, const char *nulls,
						 long count)
{
	int			ret;

	/* the plan must outlive any nested pulse.page call the query makes */
	pc_depth++;
	PG_TRY();
	{
		ret = SPI_execute_plan(e->plan, values, nulls, false, count);
	}
	PG_FINALLY();
	{
		pc_depth--;
	}
	PG_END_TRY();
	return ret;
}

/*
 * pulse.page_cache_stats() RETURNS (entries int, hits bigint, prepares bigint)
 *
 * This backend's cache of prepared page plans, to check that plans are
 * prepared once and reused.
 */
Datum
pulse_page_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	values[0] = Int32GetDatum(pc_table ? (int32) hash_get_num_entries(pc_table) : 0);
	values[1] = Int64GetDatum((int64) pc_hits);
	values[2] = Int64GetDatum((int64) pc_prepares);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
