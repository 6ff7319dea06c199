/*-------------------------------------------------------------------------
 *
 * keyed_tags.c
 *		Keyed cache tags: a write invalidates only the cached answers of the
 *		key values it touched.
 *
 * pulse.track(rel, tag, keys) names key columns of a tracked table.  Every
 * committed write then bumps, besides the table's tag, one keyed tag
 * "<tag>:<col>=<value>" per key column and distinct value among the rows it
 * inserted, deleted or updated (old and new values); a NULL value is the
 * tag "<tag>:<col>".  The triggers that capture them (installed by tags.c,
 * one per event because transition tables allow one event per trigger) are
 * statement-level: they read the statement's transition tables once, so a
 * one-row write costs one short pass and a bulk write one pass over rows it
 * already materialized.  tag_pending.c bumps the tags at pre-commit and
 * replaces the values of a column by the column's epoch "<tag>:<col>=*"
 * beyond pulse.keyed_tag_limit distinct values per transaction.  A TRUNCATE
 * bumps the epochs (tags.c), and so does a write when a key column is gone
 * or has changed to a type that is not allowed (the table was altered after
 * track()): never a wrong answer, at worst one invalidation too many.
 *
 * Key columns must be of a type whose text form is the same for equal
 * values whatever the session's settings: integers, text, varchar, uuid,
 * boolean, enums, and domains over them.  (A numeric 1.0 equals 1.00 but
 * prints differently; a date or timestamp prints by DateStyle and TimeZone:
 * a reader filling "{id}" would compute a tag no writer bumps.)
 *
 * What readers use (pulse-proxy):
 *	- pulse.keyed_state(tags text[]) returns the snapshot it runs in and the
 *	  generations of the tags read in it: called in the same statement as an
 *	  endpoint's function, it says which writes the answer includes.  It is
 *	  called with every keyed read and live refresh, so it is C with a kept
 *	  plan (an SQL function with a SET clause was parsed and planned at each
 *	  call: a third of a live refresh's database CPU).
 *	- pulse._tenant_key(type) is the text form of pulse.tenant as a value of
 *	  a key column of that type, or NULL when no value of the type equals it
 *	  (no row can carry it, so no keyed tag is needed).
 *	- pulse.prune_keyed_tags(older_than) deletes keyed rows of
 *	  pulse.cache_tags not bumped for that long, and bumps the epochs of
 *	  their columns in the same transaction: a pruned tag reads as 0 again,
 *	  and a cached answer recorded with a generation from before the prune
 *	  must not match it, which the epoch bump guarantees (every keyed answer
 *	  depends on its column's epoch).
 *
 * Locking: the prune locks the epochs first (waiting like any writer, in
 * tag order), then the keyed rows with SKIP LOCKED: it never waits while it
 * holds a lock a committing writer may need, so it cannot deadlock with
 * them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "pulse.h"
#include "tag_pending.h"

/* A key column while the trigger reads the transition tables. */
typedef struct KeyCol
{
	char	   *family;			/* "<tag>:<col>" */
	AttrNumber	attnum;
	FmgrInfo	out;			/* the type's output function */
	bool		active;			/* still remembering values */
} KeyCol;

/*
 * kt_type_allowed
 *		Whether a key column of type typid has one text form per value,
 *		whatever the session's settings (see the file header).
 */
static bool
kt_type_allowed(Oid typid)
{
	Oid			base = getBaseType(typid);

	switch (base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case TEXTOID:
		case VARCHAROID:
		case UUIDOID:
		case BOOLOID:
			return true;
		default:
			return type_is_enum(base);
	}
}

List *
pulse_keyed_check_columns(Oid relid, const char *tag, ArrayType *keys)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *out = NIL;

	if (ARR_NDIM(keys) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key columns must be a one-dimensional array")));
	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *col;
		AttrNumber	attnum;
		Oid			typid;
		ListCell   *lc;
		bool		dup = false;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key column names must not be null")));
		col = TextDatumGetCString(elems[i]);
		attnum = get_attnum(relid, col);
		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							col, get_rel_name(relid))));
		if (attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("system column \"%s\" cannot be a key column", col)));
		typid = get_atttype(relid, attnum);
		if (!kt_type_allowed(typid))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key column \"%s\" has type %s, which cannot key cache tags",
							col, format_type_be(typid)),
					 errhint("Key columns must be integers, text, varchar, uuid, boolean or an enum: their text form does not depend on settings.")));
		if (strlen(tag) + 1 + strlen(col) + 2 > PULSE_TAG_MAX_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("tag and key column name are too long"),
					 errdetail("A keyed tag has at most %d bytes.", PULSE_TAG_MAX_LEN)));
		foreach(lc, out)
			dup = dup || strcmp((char *) lfirst(lc), col) == 0;
		if (!dup)
			out = lappend(out, col);
	}
	return out;
}

/*
 * kt_read_store
 *		Remembers the key values of every row of one transition table.
 *		tmpcxt is reset for each row (the output functions allocate).
 */
static void
kt_read_store(Tuplestorestate *store, TupleDesc tupdesc, KeyCol *cols,
			  int ncols, MemoryContext tmpcxt)
{
	TupleTableSlot *slot;
	int			readptr;
	int			nactive = 0;

	for (int c = 0; c < ncols; c++)
		nactive += cols[c].active;
	if (store == NULL || nactive == 0)
		return;

	/* a read pointer of our own: other triggers of the statement read the same table */
	readptr = tuplestore_alloc_read_pointer(store, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(store, readptr);
	tuplestore_rescan(store);
	slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsMinimalTuple);
	while (nactive > 0 && tuplestore_gettupleslot(store, true, false, slot))
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(tmpcxt);

		for (int c = 0; c < ncols; c++)
		{
			bool		isnull;
			Datum		v;
			char	   *text;

			if (!cols[c].active)
				continue;
			v = slot_getattr(slot, cols[c].attnum, &isnull);
			text = isnull ? NULL : OutputFunctionCall(&cols[c].out, v);
			if (!pulse_tag_remember_keyed(cols[c].family, text,
										  text != NULL ? (int) strlen(text) : 0))
			{
				cols[c].active = false;
				nactive--;
			}
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(tmpcxt);
	}
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_select_read_pointer(store, 0);
}

/*
 * pulse._track_keys_trigger() RETURNS trigger
 *
 * Statement-level AFTER INSERT, UPDATE or DELETE trigger with transition
 * tables, installed by pulse.track; its arguments are the tag and the key
 * columns.
 */
PG_FUNCTION_INFO_V1(pulse_track_keys_trigger);
Datum
pulse_track_keys_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	TupleDesc	tupdesc;
	KeyCol	   *cols;
	int			ncols = 0;
	MemoryContext tmpcxt;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pulse._track_keys_trigger: not called by trigger manager")));
	tg = td->tg_trigger;
	if (!TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) || tg->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pulse._track_keys_trigger must be an AFTER INSERT, UPDATE or DELETE ... FOR EACH STATEMENT trigger with a tag and key columns"),
				 errhint("Use pulse.track() to install it.")));

	tupdesc = RelationGetDescr(td->tg_relation);
	cols = (KeyCol *) palloc0(sizeof(KeyCol) * (tg->tgnargs - 1));
	for (int i = 1; i < tg->tgnargs; i++)
	{
		KeyCol	   *k = &cols[ncols];
		int			attnum = SPI_fnumber(tupdesc, tg->tgargs[i]);
		Oid			typout;
		bool		varlena;

		k->family = psprintf("%s:%s", tg->tgargs[0], tg->tgargs[i]);
		/* dropped, renamed, or of a type that no longer keys tags: every value */
		if (attnum <= 0 ||
			!kt_type_allowed(TupleDescAttr(tupdesc, attnum - 1)->atttypid))
		{
			pulse_tag_remember_epoch(k->family);
			continue;
		}
		k->attnum = attnum;
		getTypeOutputInfo(TupleDescAttr(tupdesc, attnum - 1)->atttypid,
						  &typout, &varlena);
		fmgr_info(typout, &k->out);
		k->active = true;
		ncols++;
	}

	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "pulse keyed tags",
								   ALLOCSET_SMALL_SIZES);
	kt_read_store(td->tg_oldtable, tupdesc, cols, ncols, tmpcxt);
	kt_read_store(td->tg_newtable, tupdesc, cols, ncols, tmpcxt);
	MemoryContextDelete(tmpcxt);

	return PointerGetDatum(NULL);
}

/*
 * pulse._tenant_key(typ regtype) RETURNS text
 *
 * pulse.tenant as the text form of a value of type typ (a key column's
 * type), as a writer's keyed tag spells it: "07" is "7" for an integer
 * column.  NULL when pulse.tenant is unset or no value of typ equals it.
 */
PG_FUNCTION_INFO_V1(pulse_tenant_key);
Datum
pulse_tenant_key(PG_FUNCTION_ARGS)
{
	Oid			typid = PG_GETARG_OID(0);
	const char *tenant = pulse_tenant;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile result = NULL;
	Oid			base = getBaseType(typid);

	if (tenant == NULL || tenant[0] == '\0')
		PG_RETURN_NULL();
	if (base == TEXTOID || base == VARCHAROID)
		PG_RETURN_TEXT_P(cstring_to_text(tenant));

	/* the type's input function may reject it: in a subtransaction */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Oid			typin;
		Oid			ioparam;
		Oid			typout;
		bool		varlena;
		Datum		v;

		getTypeInputInfo(typid, &typin, &ioparam);
		v = OidInputFunctionCall(typin, (char *) tenant, ioparam, -1);
		getTypeOutputInfo(typid, &typout, &varlena);
		result = OidOutputFunctionCall(typout, v);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* only "not a value of the type" means no tag; a cancel is a cancel */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/*
 * pulse.keyed_state(tags text[]) RETURNS text
 *
 * {"snapshot" : "<pg_current_snapshot()>", "tags" : [["<tag>", <generation>],
 * ...]}: the tags in their order (NULL ones left out), a tag never bumped
 * at 0.  Both read in the active snapshot, the calling statement's: the
 * lookup runs read-only through SPI, which takes no snapshot of its own.
 */
static SPIPlanPtr ks_plan = NULL;

PG_FUNCTION_INFO_V1(pulse_keyed_state);
Datum
pulse_keyed_state(PG_FUNCTION_ARGS)
{
	Datum	   *elems = NULL;
	bool	   *nulls = NULL;
	int			n = 0;
	int			given = 0;
	int64	   *gens;
	StringInfoData out;
	Datum		snap;

	if (!PG_ARGISNULL(0))
	{
		ArrayType  *tags = PG_GETARG_ARRAYTYPE_P(0);

		if (ARR_NDIM(tags) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("tags must be a one-dimensional array")));
		deconstruct_array(tags, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	}
	gens = (int64 *) palloc0(sizeof(int64) * (n > 0 ? n : 1));
	for (int i = 0; i < n; i++)
		given += !nulls[i];

	if (given > 0)
	{
		Datum		arg = PG_GETARG_DATUM(0);
		int			rc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (ks_plan == NULL)
		{
			Oid			argtypes[1] = {TEXTARRAYOID};
			SPIPlanPtr	plan = SPI_prepare("SELECT c.tag, c.generation FROM pulse.cache_tags c "
										   "WHERE c.tag OPERATOR(pg_catalog.=) ANY ($1)",
										   1, argtypes);

			if (plan == NULL || SPI_keepplan(plan) != 0)
				elog(ERROR, "could not prepare the keyed state lookup: %s",
					 SPI_result_code_string(SPI_result));
			ks_plan = plan;
		}
		rc = SPI_execute_plan(ks_plan, &arg, NULL, true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read cache tags: %s", SPI_result_code_string(rc));
		/* a handful of tags per call: a scan per row is cheaper than a hash */
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			text	   *tag = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
			int64		gen = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));

			for (int i = 0; i < n; i++)
				if (!nulls[i] && VARSIZE_ANY_EXHDR(tag) == VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i])) &&
					memcmp(VARDATA_ANY(tag), VARDATA_ANY(DatumGetPointer(elems[i])), VARSIZE_ANY_EXHDR(tag)) == 0)
					gens[i] = gen;
		}
		SPI_finish();
	}

	snap = OidFunctionCall0Coll(F_PG_CURRENT_SNAPSHOT, InvalidOid);
	initStringInfo(&out);
	appendStringInfoString(&out, "{\"snapshot\" : ");
	escape_json(&out, DatumGetCString(OidFunctionCall1Coll(F_PG_SNAPSHOT_OUT, InvalidOid, snap)));
	appendStringInfoString(&out, ", \"tags\" : [");
	for (int i = 0, k = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		appendStringInfoString(&out, k++ > 0 ? ", [" : "[");
		escape_json(&out, TextDatumGetCString(elems[i]));
		appendStringInfo(&out, ", " INT64_FORMAT "]", gens[i]);
	}
	appendStringInfoString(&out, "]}");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}
