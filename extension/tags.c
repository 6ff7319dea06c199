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
 * aggregate refresh code calls it through SPI).  pulse.track(rel, tag, keys)
 * installs one statement-level AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
 * trigger, "pulse_track", running pulse._track_trigger(tag, keys...), and
 * with keys three more, "pulse_track_keys_{ins,upd,del}", which read the
 * statement's transition tables (keyed_tags.c).  The triggers do not write:
 * they remember tags for the transaction, and tag_pending.c bumps them once
 * each, in tag order, at pre-commit.  So a tracked table costs one bump per
 * transaction and tag however many statements wrote it; the row lock on the
 * tag is held only while the transaction commits, and two writers always
 * lock their tags in the same order, so tracking can neither deadlock
 * writers nor serialize them for longer than a commit.
 *
 * Privileges and ownership:
 *	- pulse.cache_tags is written only by tag_pending.c, as the owner
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
#include "tag_pending.h"

/* Names of the tracking triggers: the table's tag, and its keyed tags (per event). */
#define TAG_TRIGGER_NAME	"pulse_track"
#define TAG_KEYS_TRIGGER	"pulse_track_keys"

static Oid	tag_trigger_function(const char *name, Oid *owner);
static bool tag_current(Oid relid, Oid *tgfoid, char **tag, List **keys);
static void tag_check_table(Oid relid);

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

	PG_RETURN_INT64(pulse_tag_bump_now(tag));
}

/*
 * pulse._track_trigger() RETURNS trigger
 *
 * Statement-level AFTER trigger installed by pulse.track; its arguments are
 * the tag and then the key columns, if any.  Remembers the tag; a TRUNCATE
 * also remembers the epoch of every key column (every value went).
 */
PG_FUNCTION_INFO_V1(pulse_track_trigger);
Datum
pulse_track_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *tg;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pulse._track_trigger: not called by trigger manager")));
	tg = trigdata->tg_trigger;
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		tg->tgnargs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pulse._track_trigger must be an AFTER ... FOR EACH STATEMENT trigger with a tag argument"),
				 errhint("Use pulse.track() to install it.")));

	pulse_tag_check_name(tg->tgargs[0]);
	pulse_tag_remember(tg->tgargs[0]);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		for (int i = 1; i < tg->tgnargs; i++)
			pulse_tag_remember_epoch(psprintf("%s:%s", tg->tgargs[0], tg->tgargs[i]));
	}
	return PointerGetDatum(NULL);
}

/*
 * tag_trigger_function
 *		OID of pulse.<name>() (a trigger function); *owner receives its owner.
 */
static Oid
tag_trigger_function(const char *name, Oid *owner)
{
	List	   *qname = list_make2(makeString("pulse"), makeString((char *) name));
	Oid			fnoid = LookupFuncName(qname, 0, NULL, false);

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

/* The arguments of a trigger (pg_trigger.tgargs: nargs NUL-terminated strings) as a List of C strings. */
static List *
tag_split_args(bytea *args, int nargs)
{
	const char *p = VARDATA_ANY(args);
	const char *end = p + VARSIZE_ANY_EXHDR(args);
	List	   *out = NIL;

	for (int i = 0; i < nargs && p < end; i++)
	{
		size_t		len = strnlen(p, end - p);

		out = lappend(out, pnstrdup(p, len));
		p += len + 1;
	}
	return out;
}

/*
 * pulse._trigger_args(args bytea, nargs int) RETURNS text[]
 *
 * The arguments of a trigger from pg_trigger.tgargs and tgnargs; for the
 * pulse.tracked view.
 */
PG_FUNCTION_INFO_V1(pulse_trigger_args);
Datum
pulse_trigger_args(PG_FUNCTION_ARGS)
{
	List	   *args = tag_split_args(PG_GETARG_BYTEA_PP(0), PG_GETARG_INT32(1));
	Datum	   *elems = (Datum *) palloc(sizeof(Datum) * (list_length(args) + 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, args)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * tag_current
 *		Whether relid has a trigger named pulse_track; if so, *tgfoid receives
 *		the function it runs, *tag its first argument (NULL without any) and
 *		*keys the others (key columns).
 *
 * Caller has connected to SPI.
 */
static bool
tag_current(Oid relid, Oid *tgfoid, char **tag, List **keys)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	List	   *all;
	int			rc;

	rc = SPI_execute_with_args("SELECT t.tgfoid, t.tgnargs, t.tgargs "
							   "FROM pg_catalog.pg_trigger t "
							   "WHERE t.tgrelid = $1 AND t.tgname = '" TAG_TRIGGER_NAME "'",
							   1, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the triggers of relation %u", relid);
	*tag = NULL;
	*keys = NIL;
	if (SPI_processed == 0)
		return false;

	*tgfoid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	all = tag_split_args(DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 3,
													   &isnull)),
						 DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2,
													 &isnull)));
	if (all != NIL)
	{
		*tag = (char *) linitial(all);
		*keys = list_delete_first(all);
	}
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

/* whether the List of C strings l has s */
static bool
tag_list_has(List *l, const char *s)
{
	ListCell   *lc;

	foreach(lc, l)
		if (strcmp((char *) lfirst(lc), s) == 0)
			return true;
	return false;
}

/*
 * tag_check_families_unused
 *		Raises 2BP01 when an endpoint's tag template depends on a keyed tag of
 *		family "<tag>:<col>" for a col of old_keys that is not kept (not in
 *		new_keys, or new_tag differs from tag): once its trigger is gone,
 *		nothing would ever bump those tags and the endpoint's cached answers
 *		would never be invalidated again.  Caller has connected to SPI.
 */
static void
tag_check_families_unused(const char *tag, List *old_keys, const char *new_tag,
						  List *new_keys)
{
	ListCell   *lc;

	foreach(lc, old_keys)
	{
		char	   *col = (char *) lfirst(lc);
		char	   *prefix;
		Oid			argtypes[1] = {TEXTOID};
		Datum		args[1];
		int			rc;

		if (new_tag != NULL && strcmp(tag, new_tag) == 0 &&
			tag_list_has(new_keys, col))
			continue;
		prefix = psprintf("%s:%s={", tag, col);
		args[0] = CStringGetTextDatum(prefix);
		rc = SPI_execute_with_args("SELECT e.name FROM pulse.endpoint e, "
								   "pg_catalog.unnest(e.tags) t "
								   "WHERE pg_catalog.left(t, pg_catalog.length($1)) "
								   "OPERATOR(pg_catalog.=) $1 "
								   "ORDER BY e.name COLLATE \"C\" LIMIT 1",
								   1, argtypes, args, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read pulse.endpoint");
		if (SPI_processed == 1)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("endpoint \"%s\" depends on the keyed tags of column \"%s\" of tag \"%s\"",
							SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
							col, tag),
					 errhint("Change the endpoint's tags with pulse.expose first.")));
	}
}

/* CREATE OR REPLACE TRIGGER or DROP TRIGGER IF EXISTS, as the owner of the trigger functions */
static void
tag_exec_as(Oid owner, const char *sql)
{
	PulseAsUser as_fn_owner;

	/* as the owner of the trigger functions: only it may attach them to a table (see the file header) */
	pulse_become_user(&as_fn_owner, owner, false);
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not change the tracking triggers: %s", sql);
	pulse_restore_user(&as_fn_owner);
}

/* The keyed triggers, one per event (transition tables allow one event per trigger). */
static const struct
{
	const char *name;
	const char *event;
}			tag_keyed_triggers[] = {
	{TAG_KEYS_TRIGGER "_ins", "INSERT ON %s REFERENCING NEW TABLE AS pulse_keys_new"},
	{TAG_KEYS_TRIGGER "_upd", "UPDATE ON %s REFERENCING OLD TABLE AS pulse_keys_old NEW TABLE AS pulse_keys_new"},
	{TAG_KEYS_TRIGGER "_del", "DELETE ON %s REFERENCING OLD TABLE AS pulse_keys_old"},
};

/* drops the keyed triggers of relid (relname: its quoted name), if any; caller has connected to SPI */
static void
tag_drop_keyed(Oid relid, const char *relname, Oid owner)
{
	for (int i = 0; i < lengthof(tag_keyed_triggers); i++)
	{
		Oid			argtypes[2] = {OIDOID, TEXTOID};
		Datum		args[2] = {ObjectIdGetDatum(relid),
		CStringGetTextDatum(tag_keyed_triggers[i].name)};

		if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_trigger "
								  "WHERE tgrelid = $1 AND tgname = $2",
								  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the triggers of relation %u", relid);
		if (SPI_processed == 1)
			tag_exec_as(owner, psprintf("DROP TRIGGER %s ON %s",
										tag_keyed_triggers[i].name, relname));
	}
}

/*
 * tag_install
 *		(Re)creates the triggers of relid (relname: quoted) for tag and keys:
 *		pulse_track always, pulse_track_keys_{ins,upd,del} with keys; drops
 *		those without keys.
 */
static void
tag_install(Oid relid, const char *relname, const char *tag, List *keys, Oid owner)
{
	StringInfoData args;
	ListCell   *lc;

	initStringInfo(&args);
	appendStringInfoString(&args, quote_literal_cstr(tag));
	foreach(lc, keys)
		appendStringInfo(&args, ", %s", quote_literal_cstr((char *) lfirst(lc)));

	tag_exec_as(owner, psprintf("CREATE OR REPLACE TRIGGER " TAG_TRIGGER_NAME
								" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s"
								" FOR EACH STATEMENT"
								" EXECUTE FUNCTION pulse._track_trigger(%s)",
								relname, args.data));
	if (keys == NIL)
	{
		tag_drop_keyed(relid, relname, owner);
		return;
	}
	for (int i = 0; i < lengthof(tag_keyed_triggers); i++)
		tag_exec_as(owner, psprintf("CREATE OR REPLACE TRIGGER %s AFTER %s"
									" FOR EACH STATEMENT"
									" EXECUTE FUNCTION pulse._track_keys_trigger(%s)",
									tag_keyed_triggers[i].name,
									psprintf(tag_keyed_triggers[i].event, relname),
									args.data));
}

/*
 * pulse.track(rel regclass, tag text DEFAULT NULL, keys text[] DEFAULT NULL)
 *		RETURNS text
 *
 * Makes every write to rel bump tag (by default the schema-qualified name of
 * rel, quoted as in SQL: public.events, public."Order Lines") and, for each
 * key column, the keyed tags "<tag>:<col>=<value>" of the rows written (see
 * keyed_tags.c); returns the tag.  Idempotent; tracking again with another
 * tag or keys replaces the triggers, unless an endpoint depends on a keyed
 * tag that would no longer be bumped.
 */
PG_FUNCTION_INFO_V1(pulse_track);
Datum
pulse_track(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *tag;
	char	   *current = NULL;
	List	   *current_keys = NIL;
	List	   *keys = NIL;
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
	if (PG_NARGS() < 2 || PG_ARGISNULL(1))
		tag = relname;
	else
		tag = text_to_cstring(PG_GETARG_TEXT_PP(1));
	pulse_tag_check_name(tag);
	if (PG_NARGS() >= 3 && !PG_ARGISNULL(2))
		keys = pulse_keyed_check_columns(relid, tag, PG_GETARG_ARRAYTYPE_P(2));

	trigfn = tag_trigger_function("_track_trigger", &trigfn_owner);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	exists = tag_current(relid, &tgfoid, &current, &current_keys);
	if (exists && tgfoid != trigfn)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table %s already has a trigger named \"%s\"",
						relname, TAG_TRIGGER_NAME),
				 errhint("Rename or drop that trigger to track the table.")));
	if (exists && current != NULL)
		tag_check_families_unused(current, current_keys, tag, keys);

	tag_install(relid, relname, tag, keys, trigfn_owner);

	SPI_finish();

	PG_RETURN_TEXT_P(cstring_to_text(tag));
}

/*
 * pulse.untrack(rel regclass) RETURNS void
 *
 * Removes the tracking triggers of rel; 42704 when rel is not tracked,
 * 2BP01 when an endpoint depends on its keyed tags.
 */
PG_FUNCTION_INFO_V1(pulse_untrack);
Datum
pulse_untrack(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *relname;
	char	   *current = NULL;
	List	   *current_keys = NIL;
	Oid			tgfoid = InvalidOid;
	Oid			trigfn_owner;
	HeapTuple	tuple;

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

	if (!tag_current(relid, &tgfoid, &current, &current_keys) ||
		tgfoid != tag_trigger_function("_track_trigger", &trigfn_owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not tracked", relname)));
	if (current != NULL)
		tag_check_families_unused(current, current_keys, NULL, NIL);

	tag_drop_keyed(relid, relname, trigfn_owner);
	tag_exec_as(trigfn_owner, psprintf("DROP TRIGGER " TAG_TRIGGER_NAME " ON %s", relname));

	SPI_finish();

	PG_RETURN_VOID();
}
