/*-------------------------------------------------------------------------
 *
 * tag_pending.c
 *		The cache tags a transaction must bump when it commits, the bump
 *		itself, and the record of what the session's last transaction
 *		bumped.
 *
 * Tracked tables (tags.c installs their triggers) remember tags here: the
 * table's tag, the keyed tags "<tag>:<col>=<value>" of the rows a statement
 * wrote (keyed_tags.c), or a column's epoch "<tag>:<col>=*".  Nothing is
 * written until pre-commit: then every remembered tag is bumped once, in
 * one statement, in tag order, and NOTIFY pulse_invalidate, 'tag:generation'
 * is queued for each, after one NOTIFY pulse_commit with the time (see
 * tag_pending.h); like any NOTIFY they are delivered at commit and never
 * for a rolled-back transaction.  Tag order is the lock order on the rows of
 * pulse.cache_tags, so two committing writers can never deadlock on them,
 * and the row locks are held only while the transaction commits.
 *
 * Bounds: a transaction remembers at most pulse.keyed_tag_limit values per
 * key column ("family" <tag>:<col>).  One more and the family's values are
 * forgotten and its epoch "<tag>:<col>=*" is remembered instead: every
 * cached answer that depends on a value of the column also depends on its
 * epoch, so the bump of the epoch invalidates them all (more than needed,
 * never less).  An epoch so remembered belongs to the top-level
 * transaction: a savepoint rolled back later cannot forget it, because the
 * values it replaced may have come from outside the savepoint.  Other tags
 * remembered in a savepoint that is rolled back are forgotten with it.
 *
 * Memory: the pending set and the family counters are hash tables in
 * TopTransactionContext, created on the first tag of a transaction; the
 * callbacks forget the pointers when the transaction ends.  The record of
 * the last transaction's bumps lives in TopMemoryContext (one text per
 * session, replaced by the next transaction that bumps) so that
 * pulse.last_bumps() can return it after the commit.
 *
 * Bumps done at pre-commit use the latest snapshot under READ COMMITTED
 * rules whatever the transaction's isolation level: a generation is a
 * counter the transaction never read, so a concurrent bump of the same tag
 * must not turn into a serialization failure (see tp_bump_many).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc_vars.h"
#include "support.h"
#include "tag_pending.h"

/* A tag the current transaction must bump. */
typedef struct TpEntry
{
	char		tag[PULSE_TAG_MAX_LEN + 1];	/* hash key */
	SubTransactionId subid;		/* (sub)transaction that remembered it */
	int			family_len;		/* keyed value: length of its family; 0 otherwise */
} TpEntry;

/* How many values of a family the transaction remembered. */
typedef struct TpFamily
{
	char		family[PULSE_TAG_MAX_LEN + 1];	/* hash key: "<tag>:<col>" */
	int			nvalues;		/* never decreases: a rolled-back savepoint
								 * makes the limit come sooner, never later */
	bool		overflowed;		/* its epoch replaced its values */
} TpFamily;

static HTAB *tp_pending = NULL;
static HTAB *tp_families = NULL;
static bool tp_callbacks_registered = false;

/*
 * The bumps of the session's last transaction that bumped anything:
 * "tag:generation" lines.  tp_last_committed says whether that transaction
 * committed (set at COMMIT, cleared at the next pre-commit and at abort).
 */
static char *tp_last = NULL;
static bool tp_last_committed = false;

/* Saved plan of the batched upsert: in CacheMemoryContext via SPI_keepplan. */
static SPIPlanPtr tp_bump_plan = NULL;

static void tp_xact_callback(XactEvent event, void *arg);
static void tp_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);

void
pulse_tag_check_name(const char *tag)
{
	size_t		len = strlen(tag);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cache tag must not be empty")));
	if (len > PULSE_TAG_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cache tag is too long"),
				 errdetail("A cache tag has at most %d bytes.", PULSE_TAG_MAX_LEN)));
}

/* creates the transaction's hash tables and registers the callbacks */
static void
tp_init(void)
{
	HASHCTL		ctl;

	if (!tp_callbacks_registered)
	{
		RegisterXactCallback(tp_xact_callback, NULL);
		RegisterSubXactCallback(tp_subxact_callback, NULL);
		tp_callbacks_registered = true;
	}
	if (tp_pending != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = PULSE_TAG_MAX_LEN + 1;
	ctl.entrysize = sizeof(TpEntry);
	ctl.hcxt = TopTransactionContext;
	tp_pending = hash_create("pulse pending tags", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctl.entrysize = sizeof(TpFamily);
	tp_families = hash_create("pulse pending tag families", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* remembers tag (checked by the caller) for subtransaction subid */
static void
tp_put(const char *tag, SubTransactionId subid, int family_len)
{
	bool		found;
	TpEntry    *e = hash_search(tp_pending, tag, HASH_ENTER, &found);

	if (!found)
	{
		e->subid = subid;
		e->family_len = family_len;
	}
	else if (subid == TopSubTransactionId)
		e->subid = subid;		/* an epoch overflow: nothing may forget it */
}

void
pulse_tag_remember(const char *tag)
{
	tp_init();
	tp_put(tag, GetCurrentSubTransactionId(), 0);
}

/*
 * tp_overflow
 *		Replaces the values of family f, remembered in any (sub)transaction,
 *		by its epoch, owned by the top-level transaction.
 */
static void
tp_overflow(TpFamily *f)
{
	HASH_SEQ_STATUS seq;
	TpEntry    *e;
	size_t		flen = strlen(f->family);
	char		epoch[PULSE_TAG_MAX_LEN + 1];

	f->overflowed = true;
	hash_seq_init(&seq, tp_pending);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->family_len == (int) flen && strncmp(e->tag, f->family, flen) == 0)
			(void) hash_search(tp_pending, e->tag, HASH_REMOVE, NULL);
	}
	snprintf(epoch, sizeof(epoch), "%s=*", f->family);
	tp_put(epoch, TopSubTransactionId, 0);
}

bool
pulse_tag_remember_keyed(const char *family, const char *value, int value_len)
{
	bool		found;
	TpFamily   *f;
	char		tag[PULSE_TAG_MAX_LEN + 1];
	size_t		flen = strlen(family);

	tp_init();
	f = hash_search(tp_families, family, HASH_ENTER, &found);
	if (!found)
	{
		f->nvalues = 0;
		f->overflowed = false;
	}
	if (f->overflowed)
		return false;
	/* "<family>=<value>", or "<family>" for NULL; too long: the epoch */
	if (value != NULL && flen + 1 + (size_t) value_len > PULSE_TAG_MAX_LEN)
	{
		tp_overflow(f);
		return false;
	}
	if (value == NULL)
		memcpy(tag, family, flen + 1);
	else
	{
		memcpy(tag, family, flen);
		tag[flen] = '=';
		memcpy(tag + flen + 1, value, value_len);
		tag[flen + 1 + value_len] = '\0';
	}
	if (hash_search(tp_pending, tag, HASH_FIND, NULL) != NULL)
		return true;
	if (++f->nvalues > pulse_keyed_tag_limit)
	{
		tp_overflow(f);
		return false;
	}
	tp_put(tag, GetCurrentSubTransactionId(), (int) flen);
	return true;
}

void
pulse_tag_remember_epoch(const char *family)
{
	bool		found;
	TpFamily   *f;

	tp_init();
	f = hash_search(tp_families, family, HASH_ENTER, &found);
	if (!found)
		f->nvalues = 0;
	tp_overflow(f);
}

/* qsort comparator: tags in strcmp order */
static int
tp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * tp_bump_many
 *		Adds one to the generation of each of the ntags tags (sorted, without
 *		duplicates), creating them at 1, in that order; queues a NOTIFY for
 *		each and appends "tag:generation\n" to *log when log is not NULL.
 *		family_of[i] is the family of a keyed tag (NULL otherwise), recorded
 *		in pulse.cache_tags so that pulse.prune_keyed_tags finds its rows.
 *
 * Runs the upsert as the owner of pulse.cache_tags with search_path pinned
 * to pg_catalog, so the caller needs no privilege on the table and cannot
 * redirect the statement.  With at_commit (from the pre-commit callback)
 * the upsert sees the latest committed generations and follows READ
 * COMMITTED rules even in a REPEATABLE READ or SERIALIZABLE transaction: it
 * waits for a concurrent bump of the same tag and then increments the
 * committed value instead of failing with a serialization error.  Nothing
 * of the transaction runs after pre-commit, so the temporary isolation level
 * is seen by this statement only.
 */
static void
tp_bump_many(char **tags, char **family_of, int ntags, bool at_commit,
			 StringInfo log, int64 *out)
{
	Oid			owner = pulse_table_owner("cache_tags", false);
	PulseAsUser as_owner;
	int			save_isolevel = XactIsoLevel;
	Datum		args[2];
	Datum	   *elems;
	bool	   *fam_nulls;
	Datum	   *fams;
	int			rc;

	pulse_become_user(&as_owner, owner, true);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (tp_bump_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTARRAYOID, TEXTARRAYOID};
		SPIPlanPtr	plan;

		/* the rows are locked in the order of the array: tag order */
		plan = SPI_prepare("INSERT INTO pulse.cache_tags AS c "
						   "(tag, generation, updated_at, family) "
						   "SELECT t.tag, 1, pg_catalog.now(), t.family "
						   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) "
						   "WITH ORDINALITY AS t(tag, family, ord) ORDER BY t.ord "
						   "ON CONFLICT (tag) DO UPDATE "
						   "SET generation = c.generation OPERATOR(pg_catalog.+) 1, "
						   "updated_at = pg_catalog.now() "
						   "RETURNING c.tag, c.generation",
						   2, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		tp_bump_plan = plan;
	}

	elems = (Datum *) palloc(sizeof(Datum) * ntags);
	fams = (Datum *) palloc(sizeof(Datum) * ntags);
	fam_nulls = (bool *) palloc(sizeof(bool) * ntags);
	for (int i = 0; i < ntags; i++)
	{
		elems[i] = CStringGetTextDatum(tags[i]);
		fam_nulls[i] = (family_of == NULL || family_of[i] == NULL);
		fams[i] = fam_nulls[i] ? (Datum) 0 : CStringGetTextDatum(family_of[i]);
	}
	args[0] = PointerGetDatum(construct_array(elems, ntags, TEXTOID, -1, false,
											  TYPALIGN_INT));
	{
		int			dims[1] = {ntags};
		int			lbs[1] = {1};

		args[1] = PointerGetDatum(construct_md_array(fams, fam_nulls, 1, dims,
													 lbs, TEXTOID, -1, false,
													 TYPALIGN_INT));
	}

	if (at_commit)
	{
		Snapshot	snapshot = GetLatestSnapshot();

		PG_TRY();
		{
			XactIsoLevel = XACT_READ_COMMITTED;
			rc = SPI_execute_snapshot(tp_bump_plan, args, NULL, snapshot,
									  InvalidSnapshot, false, false, 0);
		}
		PG_FINALLY();
		{
			XactIsoLevel = save_isolevel;
		}
		PG_END_TRY();
	}
	else
		rc = SPI_execute_plan(tp_bump_plan, args, NULL, false, 0);

	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != (uint64) ntags)
		elog(ERROR, "could not bump %d cache tags: %s", ntags,
			 SPI_result_code_string(rc));

	{
		char		when[32];
		TimestampTz now = GetCurrentTimestamp();

		snprintf(when, sizeof(when), INT64_FORMAT,
				 (int64) now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC);
		Async_Notify(PULSE_COMMIT_CHANNEL, when);
	}
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *tag = SPI_getvalue(SPI_tuptable->vals[i],
									   SPI_tuptable->tupdesc, 1);
		int64		generation = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc,
															 2, &isnull));
		char		payload[PULSE_TAG_MAX_LEN + 32];

		snprintf(payload, sizeof(payload), "%s:" INT64_FORMAT, tag, generation);
		Async_Notify(PULSE_TAG_CHANNEL, payload);
		if (log != NULL)
			appendStringInfo(log, "%s\n", payload);
		if (out != NULL)
			out[i] = generation;
	}

	SPI_finish();
	pulse_restore_user(&as_owner);
}

/* appends to the session's record of the running transaction's bumps */
static void
tp_record(const char *lines)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	char	   *next;

	if (tp_last != NULL && !tp_last_committed)
		next = psprintf("%s%s", tp_last, lines);
	else
		next = pstrdup(lines);
	if (tp_last != NULL)
		pfree(tp_last);
	tp_last = next;
	tp_last_committed = false;
	MemoryContextSwitchTo(oldcxt);
}

int64
pulse_tag_bump_now(const char *tag)
{
	char	   *tags[1] = {(char *) tag};
	int64		generation = 0;
	StringInfoData log;

	pulse_tag_check_name(tag);
	initStringInfo(&log);
	tp_bump_many(tags, NULL, 1, false, &log, &generation);
	tp_record(log.data);
	if (!tp_callbacks_registered)
	{
		RegisterXactCallback(tp_xact_callback, NULL);
		RegisterSubXactCallback(tp_subxact_callback, NULL);
		tp_callbacks_registered = true;
	}
	return generation;
}

/*
 * tp_flush
 *		Bumps every tag the transaction remembered, once each, in tag order.
 *		Called at pre-commit (and pre-prepare, where the NOTIFY makes PREPARE
 *		fail as for any transaction that notifies).  An error aborts the
 *		commit.
 */
static void
tp_flush(void)
{
	HTAB	   *pending = tp_pending;
	HASH_SEQ_STATUS seq;
	TpEntry    *e;
	char	  **tags;
	char	  **families;
	long		n;
	int			i = 0;
	StringInfoData log;

	tp_pending = NULL;
	tp_families = NULL;
	if (pending == NULL || (n = hash_get_num_entries(pending)) == 0)
		return;
	/* the transaction dropped pulse after writing a tracked table */
	if (!OidIsValid(pulse_table_owner("cache_tags", true)))
		return;

	tags = (char **) palloc(sizeof(char *) * n);
	hash_seq_init(&seq, pending);
	while ((e = hash_seq_search(&seq)) != NULL)
		tags[i++] = e->tag;
	qsort(tags, n, sizeof(char *), tp_cmp);
	families = (char **) palloc0(sizeof(char *) * n);
	for (i = 0; i < n; i++)
	{
		e = hash_search(pending, tags[i], HASH_FIND, NULL);
		if (e->family_len > 0)
			families[i] = pnstrdup(tags[i], e->family_len);
	}

	initStringInfo(&log);
	tp_bump_many(tags, families, (int) n, true, &log, NULL);
	tp_record(log.data);
}

static void
tp_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			tp_flush();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			tp_pending = NULL;
			tp_families = NULL;
			if (tp_last != NULL)
				tp_last_committed = true;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* the memory went with TopTransactionContext */
			tp_pending = NULL;
			tp_families = NULL;
			if (tp_last != NULL && !tp_last_committed)
			{
				pfree(tp_last);
				tp_last = NULL;
			}
			break;
	}
}

static void
tp_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS seq;
	TpEntry    *e;

	if (tp_pending == NULL ||
		(event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	hash_seq_init(&seq, tp_pending);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->subid != mySubid)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			e->subid = parentSubid;
		else					/* its writes are undone: so is their invalidation */
			(void) hash_search(tp_pending, e->tag, HASH_REMOVE, NULL);
	}
}

/*
 * pulse.last_bumps() RETURNS text
 *
 * The bumps of the session's last committed transaction that bumped tags,
 * as "tag:generation" lines in tag order; NULL when there was none.
 * pulse-proxy reads it right after a write, in the same session, to update
 * its generations before it answers.  Cleared by the next transaction that
 * bumps.
 */
PG_FUNCTION_INFO_V1(pulse_last_bumps);
Datum
pulse_last_bumps(PG_FUNCTION_ARGS)
{
	if (tp_last == NULL || !tp_last_committed)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tp_last));
}
