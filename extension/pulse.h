/*-------------------------------------------------------------------------
 *
 * pulse.h
 *		Shared declarations of the pulse extension, grouped by the file that
 *		defines them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_H
#define PULSE_H

#include "postgres.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/jsonb.h"

/*
 * Files that depend on nothing else of pulse, each with a header of its own:
 * support.c (acting as a role, a worker's catch-and-abort), guc.c (the
 * shared GUCs), worker_shmem.c (the workers' shared memory and wake-up).
 */
#include "guc_vars.h"
#include "support.h"
#include "worker_shmem.h"

/* fingerprint.c */

/*
 * Fingerprint of a query as 16 lowercase hex digits plus the terminating
 * NUL.  Raises 42601 on invalid SQL.
 */
#define PULSE_FINGERPRINT_LEN 16
extern void pulse_fingerprint_text(const char *query,
								   char out[PULSE_FINGERPRINT_LEN + 1]);
extern uint64 pulse_fingerprint_u64(const char *query);

/* cursor.c */

/*
 * One sort-key value of a cursor: NULL, or the bytes of the value (page.c
 * stores the type's binary send form, which may contain NUL bytes).
 */
typedef struct PulseCursorKey
{
	bool		isnull;
	char	   *text;			/* palloc'd value bytes; NULL when isnull */
	int			len;			/* number of bytes at text */
} PulseCursorKey;

/* What a cursor says once its signature and binding have been checked. */
typedef struct PulseCursor
{
	bool		backward;		/* true: page before the keys */
	int			nkeys;
	PulseCursorKey *keys;
} PulseCursor;

/*
 * The binding a cursor is valid for: the exact text of the query (literal
 * values included), the canonical order, the bound arguments, the tenant
 * and what the text resolved to (signature: the types of the sort keys and
 * parameters, the tables read).  Hashed to 8 bytes inside the token.
 */
extern void pulse_cursor_binding(const char *query, const char *order_by,
								 const char *args_text, const char *tenant,
								 const char *signature, uint8 out[8]);
extern char *pulse_cursor_encode(const uint8 binding[8], bool backward,
								 int nkeys, const PulseCursorKey *keys);
extern void pulse_cursor_decode(const char *token, const uint8 binding[8],
								int expected_nkeys, PulseCursor *out);

/* keyed_tags.c */

/*
 * Checks the key columns keys (text[]) of relid tracked under tag: columns of
 * relid, of a type that can key cache tags; raises otherwise.  Returns their
 * names (palloc'd C strings) without duplicates, in the order given.
 */
extern List *pulse_keyed_check_columns(Oid relid, const char *tag,
									   ArrayType *keys);

/*
 * Keyset pagination: page.c (pulse.page), page_query.c, page_nullable.c,
 * page_sql.c, page_cache.c, page_args.c, page_result.c and explain_page.c.
 * The shared types come first, then the functions grouped by file.
 */
#define PULSE_PAGE_MAX_KEYS		32
#define PULSE_PAGE_MAX_SIZE		10000
#define PULSE_PAGE_MAX_ARGS		100

/* One sort key of order_by, as written by the caller. */
typedef struct PageKey
{
	char	   *name;			/* column name, unquoted */
	bool		desc;
	bool		nulls_first;
} PageKey;

/* What is known about the base query, independent of cursor and direction. */
typedef struct PageQueryInfo
{
	char	   *stmt;			/* the single SELECT as written, without ';' */
	int			nparams;
	Oid		   *paramtypes;		/* inferred types of $1..$nparams */
	int			nkeys;
	PageKey    *keys;
	Oid		   *keytypes;
	bool	   *keynotnull;		/* key proven never NULL (page_nullable.c) */
	char	   *signature;		/* key and parameter types, tables read: bound
								 * into cursors */
	Oid			origin_rel;		/* table the sort keys come from, or 0 */
	List	   *eq_columns;		/* names of columns filtered by = */
	char		fingerprint[PULSE_FINGERPRINT_LEN + 1]; /* shown by explain_page */
	char	   *order_canon;	/* canonical order_by, bound into cursors */
} PageQueryInfo;

/* A prepared keyset query for one variant of a page (page_cache.c). */
typedef struct PageCacheEntry
{
	uint64		hash;			/* hash key; must be first */
	char	   *key;			/* full cache key, to rule out collisions */
	PageQueryInfo *info;
	SPIPlanPtr	plan;			/* saved SPI plan */
	char	   *sql;
	int			sort_state;		/* -1 unknown, 0 index order, 1 sort */
	bool		stale;			/* a relation it reads was invalidated */
	MemoryContext cxt;			/* holds everything above */
	int			nrelids;
	Oid		   *relids;			/* relations the plan depends on */
} PageCacheEntry;

/* page_query.c */

/*
 * Checks that query is one SELECT pulse.page can wrap, prepares it with
 * the parameter types left to the parser and returns what a page needs to
 * know about it: parameter and key types, which keys are proven NOT NULL,
 * the table the keys come from.  keys (nkeys of them) become info->keys.
 * Caller is connected to SPI.
 */
extern PageQueryInfo *pulse_page_analyze(const char *query, PageKey *keys,
										 int nkeys, int nargs);

/* page_nullable.c */

/*
 * True when output column attno of query (an analyzed and rewritten
 * SELECT) is proven never NULL; false when it may be NULL or nothing can
 * be proven.
 */
extern bool pulse_page_column_notnull(Query *query, AttrNumber attno);

/* page_sql.c */

/* Parses order_by; raises 22023 on anything but a list of sort keys. */
extern PageKey *pulse_page_parse_order(const char *order_by, int *nkeys);

/* "pulse_q."k1" ASC NULLS LAST, ..." for the order, or its reverse. */
extern char *pulse_page_order_sql(const PageKey *keys, int nkeys, bool reverse);

/*
 * The keyset query of one variant: the query wrapped as pulse_q, the seek
 * predicate when with_cursor (nullmask[i]: the cursor's key i is NULL),
 * the order (reversed for a backward page) and LIMIT limit.  The caller's
 * parameters keep $1..$nparams; the key values are the next nkeys.
 */
extern char *pulse_page_build_sql(const PageQueryInfo *info, bool with_cursor,
								  bool reverse, const bool *nullmask,
								  int limit);

/* page_cache.c */

/*
 * The prepared plan of one variant of a page, from this backend's cache or
 * prepared now (and the query analysed) when missing or stale.  Locks the
 * relations the plan reads, so that the returned analysis stays true for
 * the rest of the transaction.  Caller is connected to SPI.
 */
extern PageCacheEntry *pulse_page_cache_get(const char *query,
											const char *order_by, int nargs,
											bool with_cursor, bool reverse,
											const bool *nullmask, int limit);

/*
 * Runs the entry's plan (at most count rows) with values/nulls as in
 * SPI_execute_plan; the entry stays usable by nested pulse.page calls the
 * query makes.  Returns the SPI result code.
 */
extern int	pulse_page_cache_execute(PageCacheEntry *e, Datum *values,
									 const char *nulls, long count);

/* page_args.c */

/* Raises 22004 "<name> must not be null" when argument n is NULL. */
extern void pulse_page_require_arg(FunctionCallInfo fcinfo, int n,
								   const char *name);

/*
 * args checked to be a JSON array of at most PULSE_PAGE_MAX_ARGS elements
 * (22023 otherwise); '[]' for a NULL args.
 */
extern Jsonb *pulse_page_check_args(Jsonb *args);

/*
 * Converts the args JSON array (checked) into Datums of the parameter types
 * info->paramtypes, for SPI_execute_plan.
 */
extern void pulse_page_bind_args(const PageQueryInfo *info,
								 Jsonb *args, Datum *values,
								 char *nulls);

/* page_result.c */

/* The binding of the cursors of pages of info with args (checked). */
extern void pulse_page_binding(const PageQueryInfo *info,
							   Jsonb *args, uint8 binding[8]);

/*
 * The value of cursor key i of info, decoded from the bytes the cursor
 * carries.  Bytes that do not fit the key's type raise 22023 "invalid
 * cursor", whatever the type's receive function raises.
 */
extern Datum pulse_page_key_value(const PageQueryInfo *info, int i,
								  const PulseCursorKey *key);

/*
 * The result of a page as jsonb: the items of the SPI result tt (nitems of
 * its rows: column 1 the row as jsonb, then the keys; in reverse order for
 * a backward page) and the next and prev cursors.  more: the query
 * returned a row beyond the page; after_cursor: the page was asked for with
 * a cursor.  Allocates in the current memory context.
 */
extern Jsonb *pulse_page_result(const PageQueryInfo *info,
										 const uint8 binding[8],
										 SPITupleTable *tt, int nitems,
										 bool more, bool backward,
										 bool after_cursor);

/* Pushes "key" (WJB_KEY) and a string or JSON null (WJB_VALUE). */
extern void pulse_page_json_key(JsonbParseState **st, const char *key);
extern void pulse_page_json_text(JsonbParseState **st, const char *s);

/* explain_page.c */

/*
 * Raises 55000 when pulse.require_index_for_page is on and the entry's
 * plan sorts the rows of a scan.  Caller is connected to SPI.
 */
extern void pulse_page_check_index(PageCacheEntry *e);

/* worker.c */

/*
 * Defines the worker GUCs and, when loaded from shared_preload_libraries,
 * registers the launcher.  Called from _PG_init.
 */
extern void pulse_worker_init(void);

/* aggregate_refresh.c */

/*
 * Refreshes up to max_refreshes due materialized aggregates of the current
 * database (pending changes and older than their refresh interval; not
 * scheduled with pg_cron).  Called by the per-database worker outside any
 * transaction; runs each refresh in a transaction of its own and never
 * throws: a failure is logged and recorded in pulse.aggregate_runs.
 * Returns the number of refreshes attempted.
 */
extern int	pulse_aggregates_refresh_due(int max_refreshes);

/* jobs.c */

/* Defines the job GUCs (pulse.job_max_attempts).  Called from _PG_init. */
extern void pulse_jobs_init(void);

/*
 * Runs at most max_jobs due jobs of the current database.  Called by the
 * per-database worker outside any transaction; starts and commits its own
 * transactions, one per state change, and never throws: a failing job is
 * recorded as failed (or dead) and the next one runs.  Returns the number of
 * jobs it ran.
 */
extern int	pulse_jobs_run_due(int max_jobs);

#endif							/* PULSE_H */
