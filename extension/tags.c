/*-------------------------------------------------------------------------
 *
 * tags.c
 *		Cache tags: generation counters that invalidate cached API answers.
 *
 * A cache tag is a name (by default the schema-qualified name of a table)
 * with a generation in pulse.cache_tags.  Cache keys embed the generations of
 * their tags, so bumping a generation invalidates every cached answer that
 * depends on the tag, in O(1) and without scanning the cache.  Each bump also
 * sends NOTIFY pulse_invalidate, 'tag:generation'; like any NOTIFY it is
 * delivered at commit and never for a rolled-back transaction.
 *
 * pulse.bump_tag(tag) bumps at once and returns the new generation (the
 * aggregate refresh code calls it through SPI).  pulse.track(rel, tag)
 * installs one statement-level AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
 * trigger, "pulse_track", running pulse._track_trigger(tag).  The trigger
 * does not write: it remembers the tag for the transaction, and the tags a
 * transaction wrote are bumped once each, in tag order, at pre-commit.  So a
 * tracked table costs one bump per transaction and tag however many statements
 * wrote it; the row lock on the tag is held only while the transaction
 * commits, and two writers always lock their tags in the same order, so
 * tracking can neither deadlock writers nor serialize them for longer than a
 * commit.  A savepoint rolled back forgets the tags remembered since it.
 *
 * Privileges and ownership:
 *	- pulse.cache_tags is written only by the C code of this file, as the owner
 *	  of that table (the extension owner), with search_path pinned to
 *	  pg_catalog; so ordinary roles writing a tracked table need no privilege
 *	  on it.  Everyone may read it: the same tags and generations are
 *	  broadcast on the pulse_invalidate channel, which any role may LISTEN to.
 *	- EXECUTE on pulse.bump_tag is revoked from PUBLIC: whoever may bump a tag
 *	  can empty the cache, so it is granted explicitly.
 *	- pulse.track/untrack require ownership of the table (or superuser).  The
 *	  trigger function is not executable by PUBLIC, so CREATE TRIGGER with it
 *	  is refused to everybody but superusers; track() creates the trigger as
 *	  the extension owner after checking that the caller owns the table.
 *
 * Bumps done at pre-commit use the latest snapshot under READ COMMITTED rules
 * whatever the transaction's isolation level: a generation is a counter that
 * the transaction never read, so a concurrent bump of the same tag must not
 * turn into a serialization failure (see tag_bump).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "pulse.h"

/* Channel of the invalidation messages, and name of the tracking trigger. */
#define TAG_CHANNEL			"pulse_invalidate"
#define TAG_TRIGGER_NAME	"pulse_track"
/* Longest tag accepted, in bytes: far below the 8000-byte NOTIFY limit. */
#define TAG_MAX_LEN			512

/* A tag written by the current transaction, bumped at pre-commit. */
typedef struct TagPending
{
	char	   *tag;			/* in TopTransactionContext */
	SubTransactionId subid;		/* (sub)transaction that first wrote it */
} TagPending;

/*
 * Tags of tracked tables written by the current transaction.  The list and
 * its elements live in TopTransactionContext; the callbacks below forget the
 * pointer when the transaction ends.
 */
static List *tag_pending = NIL;
static bool tag_callbacks_registered = false;

/* Saved plan of the upsert: lives in CacheMemoryContext via SPI_keepplan. */
static SPIPlanPtr tag_bump_plan = NULL;

static void tag_check_name(const char *tag);
static int64 tag_bump(const char *tag, bool at_commit);
static void tag_flush_pending(void);
static void tag_xact_callback(XactEvent event, void *arg);
static void tag_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								 SubTransactionId parentSubid, void *arg);
static void tag_remember(const char *tag);
static Oid	tag_trigger_function(Oid *owner);
static bool tag_current(Oid relid, Oid *tgfoid, char **tag);
static void tag_check_table(Oid relid);

/*
 * tag_check_name
 *		Raises 22023 unless tag is a usable tag: non-empty and short enough for
 *		a NOTIFY payload.
 */
static void
tag_check_name(const char *tag)
{
	size_t		len = strlen(tag);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cache tag must not be empty")));
	if (len > TAG_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cache tag is too long"),
				 errdetail("A cache tag has at most %d bytes.", TAG_MAX_LEN)));
}

/*
 * tag_bump
 *		Adds one to the generation of tag (creating it at 1), queues the
 *		NOTIFY and returns the new generation.
 *
 * Runs the upsert as the owner of pulse.cache_tags with search_path pinned
 * to pg_catalog, so the caller needs no privilege on the table and cannot
 * redirect the statement.  With at_commit (called from the pre-commit
 * callback) the upsert sees the latest committed generation and follows READ
 * COMMITTED rules even in a REPEATABLE READ or SERIALIZABLE transaction: it
 * waits for a concurrent bump of the same tag and then increments the
 * committed value instead of failing with a serialization error.  Nothing of
 * the transaction runs after pre-commit, so the temporary isolation level is
 * seen by this statement only.
 */
static int64
tag_bump(const char *tag, bool at_commit)
{
	Oid			owner = pulse_table_owner("cache_tags", false);
	PulseAsUser as_owner;
	int			save_isolevel = XactIsoLevel;
	Snapshot	snapshot = InvalidSnapshot;
	Datum		arg;
	char		payload[TAG_MAX_LEN + 32];
	int64		generation = 0;
	int			rc;

	tag_check_name(tag);

	pulse_become_user(&as_owner, owner, true);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (tag_bump_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare("INSERT INTO pulse.cache_tags AS c "
						   "(tag, generation, updated_at) "
						   "VALUES ($1, 1, pg_catalog.now()) "
						   "ON CONFLICT (tag) DO UPDATE "
						   "SET generation = c.generation OPERATOR(pg_catalog.+) 1, "
						   "updated_at = pg_catalog.now() "
						   "RETURNING c.generation",
						   1, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		tag_bump_plan = plan;
	}

	arg = CStringGetTextDatum(tag);
	if (at_commit)
	{
		snapshot = GetLatestSnapshot();
		PG_TRY();
		{
			XactIsoLevel = XACT_READ_COMMITTED;
			rc = SPI_execute_snapshot(tag_bump_plan, &arg, NULL, snapshot,
									  InvalidSnapshot, false, false, 1);
		}
		PG_FINALLY();
		{
			XactIsoLevel = save_isolevel;
		}
		PG_END_TRY();
	}
	else
		rc = SPI_execute_plan(tag_bump_plan, &arg, NULL, false, 1);

	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not bump cache tag \"%s\": %s", tag,
			 SPI_result_code_string(rc));
	{
		bool		isnull;

		generation = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1,
												 &isnull));
	}

	SPI_finish();
	pulse_restore_user(&as_owner);

	snprintf(payload, sizeof(payload), "%s:" INT64_FORMAT, tag, generation);
	Async_Notify(TAG_CHANNEL, payload);

	return generation;
}

/*
 * pulse.bump_tag(tag text) RETURNS bigint
 *
 * Bumps tag now and returns its new generation.
 */
PG_FUNCTION_INFO_V1(pulse_bump_tag);
Datum
pulse_bump_tag(PG_FUNCTION_ARGS)
{
	char	   *tag = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT64(tag_bump(tag, false));
}

/* list_sort comparator: pending tags in strcmp order */
static int
tag_pending_cmp(const ListCell *a, const ListCell *b)
{
	const TagPending *pa = (const TagPending *) lfirst(a);
	const TagPending *pb = (const TagPending *) lfirst(b);

	return strcmp(pa->tag, pb->tag);
}

/*
 * tag_flush_pending
 *		Bumps every tag the transaction wrote, once each, in tag order.
 *
 * Called at pre-commit (and pre-prepare, where the NOTIFY makes PREPARE fail
 * as for any transaction that notifies).  An error aborts the commit.
 */
static void
tag_flush_pending(void)
{
	List	   *todo = tag_pending;
	ListCell   *lc;

	if (todo == NIL)
		return;
	tag_pending = NIL;
	/* the transaction dropped pulse after writing a tracked table */
	if (!OidIsValid(pulse_table_owner("cache_tags", true)))
		return;
	list_sort(todo, tag_pending_cmp);
	foreach(lc, todo)
		(void) tag_bump(((TagPending *) lfirst(lc))->tag, true);
}

static void
tag_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			tag_flush_pending();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* the memory went with TopTransactionContext */
			tag_pending = NIL;
			break;
	}
}

static void
tag_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, tag_pending)
		{
			TagPending *p = (TagPending *) lfirst(lc);

			if (p->subid == mySubid)
				p->subid = parentSubid;
		}
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* its writes are undone: so is their invalidation */
		foreach(lc, tag_pending)
		{
			if (((TagPending *) lfirst(lc))->subid == mySubid)
				tag_pending = foreach_delete_current(tag_pending, lc);
		}
	}
}

/*
 * tag_remember
 *		Notes that the current transaction wrote a table tracked under tag.
 *
 * Linear in the number of distinct tags the transaction wrote, which is the
 * number of tracked tables it touched.
 */
static void
tag_remember(const char *tag)
{
	MemoryContext oldcxt;
	TagPending *p;
	ListCell   *lc;

	foreach(lc, tag_pending)
	{
		if (strcmp(((TagPending *) lfirst(lc))->tag, tag) == 0)
			return;
	}

	if (!tag_callbacks_registered)
	{
		RegisterXactCallback(tag_xact_callback, NULL);
		RegisterSubXactCallback(tag_subxact_callback, NULL);
		tag_callbacks_registered = true;
	}

	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	p = (TagPending *) palloc(sizeof(TagPending));
	p->tag = pstrdup(tag);
	p->subid = GetCurrentSubTransactionId();
	tag_pending = lappend(tag_pending, p);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * pulse._track_trigger() RETURNS trigger
 *
 * Statement-level AFTER trigger installed by pulse.track; its one argument
 * is the tag.
 */
PG_FUNCTION_INFO_V1(pulse_track_trigger);
Datum
pulse_track_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pulse._track_trigger: not called by trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pulse._track_trigger must be an AFTER ... FOR EACH STATEMENT trigger with one argument"),
				 errhint("Use pulse.track() to install it.")));

	tag_remember(trigdata->tg_trigger->tgargs[0]);

	return PointerGetDatum(NULL);
}

/*
 * tag_trigger_function
 *		OID of pulse._track_trigger(); *owner receives its owner.
 */
static Oid
tag_trigger_function(Oid *owner)
{
	List	   *name = list_make2(makeString("pulse"),
								  makeString("_track_trigger"));
	Oid			fnoid = LookupFuncName(name, 0, NULL, false);

	if (owner != NULL)
	{
		HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for function %u", fnoid);
		*owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
		ReleaseSysCache(tuple);
	}
	return fnoid;
}

/*
 * tag_current
 *		Whether relid has a trigger named pulse_track; if so, *tgfoid receives
 *		the function it runs and *tag its argument (NULL unless it has exactly
 *		one).
 *
 * Caller has connected to SPI.
 */
static bool
tag_current(Oid relid, Oid *tgfoid, char **tag)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	int			rc;

	rc = SPI_execute_with_args("SELECT t.tgfoid, "
							   "CASE WHEN t.tgnargs = 1 THEN "
							   "pg_catalog.convert_from(pg_catalog.substring(t.tgargs, 1, "
							   "pg_catalog.octet_length(t.tgargs) - 1), "
							   "pg_catalog.getdatabaseencoding()) END "
							   "FROM pg_catalog.pg_trigger t "
							   "WHERE t.tgrelid = $1 AND t.tgname = '" TAG_TRIGGER_NAME "'",
							   1, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the triggers of relation %u", relid);
	if (SPI_processed == 0)
		return false;

	*tgfoid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	*tag = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/*
 * tag_check_table
 *		Raises unless the current user may track relid: it must be a plain or
 *		partitioned, permanent table the user owns, not one of pulse's own.
 */
static void
tag_check_table(Oid relid)
{
	HeapTuple	tuple;
	Form_pg_class form;
	Oid			extoid;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	form = (Form_pg_class) GETSTRUCT(tuple);

	if (form->relkind != RELKIND_RELATION &&
		form->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", NameStr(form->relname)),
				 errdetail("Only plain and partitioned tables can be tracked.")));

	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE,
					   NameStr(form->relname));

	if (form->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot track temporary table \"%s\"",
						NameStr(form->relname))));
	ReleaseSysCache(tuple);

	extoid = getExtensionOfObject(RelationRelationId, relid);
	if (OidIsValid(extoid) && extoid == get_extension_oid("pulse", true))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot track table \"%s\" of extension pulse",
						get_rel_name(relid))));
}

/*
 * pulse.track(rel regclass, tag text DEFAULT NULL) RETURNS text
 *
 * Makes every write to rel bump tag (by default the schema-qualified name of
 * rel, quoted as in SQL: public.events, public."Order Lines") and returns the
 * tag.  Idempotent; tracking again with another tag replaces the trigger.
 */
PG_FUNCTION_INFO_V1(pulse_track);
Datum
pulse_track(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *tag;
	char	   *current = NULL;
	bool		exists;
	Oid			trigfn;
	Oid			trigfn_owner;
	Oid			tgfoid = InvalidOid;
	char	   *relname;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table to track must not be null")));
	relid = PG_GETARG_OID(0);

	/* the lock CREATE TRIGGER takes anyway; keeps the checks true */
	LockRelationOid(relid, ShareRowExclusiveLock);
	tag_check_table(relid);

	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										 get_rel_name(relid));
	if (PG_ARGISNULL(1))
		tag = relname;
	else
		tag = text_to_cstring(PG_GETARG_TEXT_PP(1));
	tag_check_name(tag);

	trigfn = tag_trigger_function(&trigfn_owner);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	exists = tag_current(relid, &tgfoid, &current);
	if (exists && tgfoid != trigfn)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table %s already has a trigger named \"%s\"",
						relname, TAG_TRIGGER_NAME),
				 errhint("Rename or drop that trigger to track the table.")));

	if (!exists || current == NULL || strcmp(current, tag) != 0)
	{
		PulseAsUser as_fn_owner;
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfo(&sql,
						 "CREATE OR REPLACE TRIGGER " TAG_TRIGGER_NAME
						 " AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s"
						 " FOR EACH STATEMENT"
						 " EXECUTE FUNCTION pulse._track_trigger(%s)",
						 relname, quote_literal_cstr(tag));

		/*
		 * As the owner of the trigger function: only it may attach the
		 * function to a table (see the file header).
		 */
		pulse_become_user(&as_fn_owner, trigfn_owner, false);
		if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not create the tracking trigger");
		pulse_restore_user(&as_fn_owner);
	}

	SPI_finish();

	PG_RETURN_TEXT_P(cstring_to_text(tag));
}

/*
 * pulse.untrack(rel regclass) RETURNS void
 *
 * Removes the tracking trigger of rel; 42704 when rel is not tracked.
 */
PG_FUNCTION_INFO_V1(pulse_untrack);
Datum
pulse_untrack(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *relname;
	char	   *current = NULL;
	Oid			tgfoid = InvalidOid;
	HeapTuple	tuple;
	StringInfoData sql;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table to untrack must not be null")));
	relid = PG_GETARG_OID(0);

	LockRelationOid(relid, ShareRowExclusiveLock);
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	ReleaseSysCache(tuple);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));

	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										 get_rel_name(relid));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (!tag_current(relid, &tgfoid, &current) ||
		tgfoid != tag_trigger_function(NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not tracked", relname)));

	initStringInfo(&sql);
	appendStringInfo(&sql, "DROP TRIGGER " TAG_TRIGGER_NAME " ON %s", relname);
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not drop the tracking trigger");

	SPI_finish();

	PG_RETURN_VOID();
}
