/*-------------------------------------------------------------------------
 *
 * cursor.c
 *		Signed keyset-pagination cursors, backend side: binds a cursor to its
 *		query, reads the per-database secret and turns the codec's status
 *		codes into PostgreSQL errors.
 *
 * The token format, its checks and their order live in cursor_codec.c,
 * which is plain C and unit-tested and fuzzed outside the server.  This file
 * only adds what needs a backend: palloc'd results, ereport, and the secret.
 *
 * The secret is the single row of pulse.secret.  Ordinary roles have no
 * privilege on that table while pulse.page runs as the calling role, so the
 * row is read through the table AM (table_open + table_beginscan), which
 * does no ACL check, instead of through SPI.  It is read on every call, not
 * cached: an UPDATE of the row (pulse.rotate_secret) fires no relcache
 * invalidation, and scanning a one-row, one-page table costs a few
 * microseconds next to the query a page runs anyway.  The snapshot is the
 * active one (the calling statement's), so a rotation committed, or made
 * earlier in the same transaction, is seen by the next statement.  The copy
 * of the key is zeroed and freed as soon as the token is signed or checked.
 *
 * Locking: AccessShareLock on pulse.secret while reading it, released at
 * transaction end like any table a query reads.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "cursor_codec.h"
#include "pulse.h"

/* The prototypes in pulse.h use PostgreSQL's names for the same sizes. */
StaticAssertDecl(PULSE_CURSOR_BINDING_LEN == 8,
				 "pulse.h declares 8-byte cursor bindings");

/* A palloc'd copy of the secret; cur_forget_secret() wipes it. */
typedef struct CurSecret
{
	bytea	   *copy;			/* detoasted copy, 4-byte header */
	uint8	   *key;			/* VARDATA(copy) */
	size_t		len;
} CurSecret;

static void cur_missing_secret(const char *why, const char *hint) pg_attribute_noreturn();
static void cur_too_many_keys(int nkeys) pg_attribute_noreturn();

/* The secret is missing or unusable: 55000 with what to do about it. */
static void
cur_missing_secret(const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pulse cursor secret is not available: %s", why),
			 errhint("%s", hint)));
}

#define CUR_HINT_REINSTALL \
	"Recreate the extension in this database: DROP EXTENSION pulse; CREATE EXTENSION pulse."
#define CUR_HINT_INSERT \
	"As a superuser: INSERT INTO pulse.secret (key) VALUES (pulse._random_bytes(32))."

/*
 * Reads the key of pulse.secret into a palloc'd copy.  Caller is inside a
 * transaction and calls cur_forget_secret() when done.
 */
static void
cur_read_secret(CurSecret *secret)
{
	Oid			nspid;
	Oid			relid = InvalidOid;
	AttrNumber	attnum;
	Relation	rel;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;
	bool		isnull = true;
	bytea	   *key = NULL;

	Assert(IsTransactionState());

	nspid = get_namespace_oid("pulse", true);
	if (OidIsValid(nspid))
		relid = get_relname_relid("secret", nspid);
	if (!OidIsValid(relid))
		cur_missing_secret("table pulse.secret does not exist",
						   CUR_HINT_REINSTALL);

	rel = table_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		cur_missing_secret("pulse.secret is not a table", CUR_HINT_REINSTALL);
	attnum = get_attnum(relid, "key");
	if (attnum <= 0 || attnum > RelationGetDescr(rel)->natts ||
		TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid != BYTEAOID)
		cur_missing_secret("pulse.secret has no bytea column \"key\"",
						   CUR_HINT_REINSTALL);

	snapshot = RegisterSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot()
								: GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	if (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		Datum		d = slot_getattr(slot, attnum, &isnull);

		found = true;
		if (!isnull)
			key = DatumGetByteaPCopy(d);	/* detoasted, our own copy */
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);

	if (!found || isnull)
		cur_missing_secret("pulse.secret has no row", CUR_HINT_INSERT);
	Assert(!VARATT_IS_EXTENDED(key));
	if (VARSIZE(key) - VARHDRSZ < PULSE_CURSOR_MIN_SECRET)
		cur_missing_secret("the key in pulse.secret is shorter than 32 bytes",
						   "As a superuser: SELECT pulse.rotate_secret().");

	secret->copy = key;
	secret->key = (uint8 *) VARDATA(key);
	secret->len = VARSIZE(key) - VARHDRSZ;
}

static void
cur_forget_secret(CurSecret *secret)
{
	if (secret->copy == NULL)
		return;
	explicit_bzero(secret->key, secret->len);
	pfree(secret->copy);
	secret->copy = NULL;
	secret->key = NULL;
	secret->len = 0;
}

/* ereport for more keys than a cursor holds; page.c normally refuses first. */
static void
cur_too_many_keys(int nkeys)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("too many sort keys for a cursor"),
			 errdetail("The order has %d keys; a cursor holds at most %d.",
					   nkeys, PULSE_CURSOR_MAX_KEYS)));
}

/*
 * See pulse.h.  NULL strings are allowed and hash differently from empty
 * ones: a cursor never crosses two contexts that differ in any way.
 */
void
pulse_cursor_binding(const char *query, const char *order_by,
					 const char *args_text, const char *tenant,
					 const char *signature, uint8 out[8])
{
	const char *parts[5];
	pulse_cursor_status_t st;

	parts[0] = query;
	parts[1] = order_by;
	parts[2] = args_text;
	parts[3] = tenant;
	parts[4] = signature;
	st = pulse_cursor_bind(parts, lengthof(parts), out);
	if (st != PULSE_CURSOR_OK)
		elog(ERROR, "could not compute cursor binding: %s",
			 pulse_cursor_strerror(st));
}

/*
 * Signs a cursor for keys (nkeys of them; each NULL or len opaque bytes,
 * NUL bytes allowed) and returns the token, a NUL-terminated string palloc'd
 * in the current memory context.  Raises 54000 when the keys do not fit in a
 * token.
 */
char *
pulse_cursor_encode(const uint8 binding[8], bool backward, int nkeys,
					const PulseCursorKey *keys)
{
	pulse_cursor_fields_t fields;
	CurSecret	secret = {NULL, NULL, 0};
	char	   *token;
	pulse_cursor_status_t st;
	int			i;

	if (nkeys < 0 || nkeys > PULSE_CURSOR_MAX_KEYS)
		cur_too_many_keys(nkeys);
	Assert(nkeys == 0 || keys != NULL);

	memset(&fields, 0, sizeof(fields));
	fields.backward = backward;
	memcpy(fields.binding, binding, PULSE_CURSOR_BINDING_LEN);
	fields.nkeys = nkeys;
	for (i = 0; i < nkeys; i++)
	{
		if (keys[i].isnull)
		{
			fields.keys[i].isnull = true;
			continue;
		}
		if (keys[i].len < 0 || (keys[i].len > 0 && keys[i].text == NULL))
			elog(ERROR, "invalid cursor key %d: length %d", i, keys[i].len);
		fields.keys[i].data = keys[i].text;
		fields.keys[i].len = (size_t) keys[i].len;
	}

	token = palloc(PULSE_CURSOR_TOKEN_BUFSIZE);
	cur_read_secret(&secret);
	st = pulse_cursor_token_encode(secret.key, secret.len, &fields,
								   token, PULSE_CURSOR_TOKEN_BUFSIZE, NULL);
	cur_forget_secret(&secret);

	if (st == PULSE_CURSOR_E_TOO_LONG)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sort key values are too long for a cursor"),
				 errdetail("A cursor is at most %d characters long.",
						   PULSE_CURSOR_MAX_TOKEN),
				 errhint("Order by shorter columns, or add a shorter unique key.")));
	if (st != PULSE_CURSOR_OK)
		elog(ERROR, "could not encode cursor: %s", pulse_cursor_strerror(st));
	return token;
}

/*
 * Checks token (signature, binding, expected_nkeys keys) and fills *out with
 * palloc'd copies of its keys: len bytes each, followed by a NUL that is not
 * counted (so a key can serve as a StringInfo's data).  Any defect of the token raises 22023
 * "invalid cursor: <reason>"; nothing in token can crash this function.
 */
void
pulse_cursor_decode(const char *token, const uint8 binding[8],
					int expected_nkeys, PulseCursor *out)
{
	pulse_cursor_fields_t fields;
	CurSecret	secret = {NULL, NULL, 0};
	uint8	   *buf;
	size_t		tlen;
	pulse_cursor_status_t st;
	size_t		i;

	if (expected_nkeys < 0 || expected_nkeys > PULSE_CURSOR_MAX_KEYS)
		cur_too_many_keys(expected_nkeys);

	/* Bounded: an oversized token is refused without reading all of it. */
	tlen = token == NULL ? 0 : strnlen(token, PULSE_CURSOR_MAX_TOKEN + 1);

	buf = palloc(PULSE_CURSOR_DECODE_BUFSIZE);
	cur_read_secret(&secret);
	st = pulse_cursor_token_decode(secret.key, secret.len, token, tlen,
								   binding, (size_t) expected_nkeys,
								   buf, PULSE_CURSOR_DECODE_BUFSIZE, &fields);
	cur_forget_secret(&secret);

	switch (st)
	{
		case PULSE_CURSOR_OK:
			break;
		case PULSE_CURSOR_E_SECRET:
		case PULSE_CURSOR_E_BUFFER:
		case PULSE_CURSOR_E_ARGUMENT:
		case PULSE_CURSOR_E_CRYPTO:
		case PULSE_CURSOR_E_TOO_MANY_KEYS:
			elog(ERROR, "could not decode cursor: %s",
				 pulse_cursor_strerror(st));
			break;
		case PULSE_CURSOR_E_VERSION:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid cursor: %s", pulse_cursor_strerror(st)),
					 errdetail("The cursor was issued by an earlier version of pulse, in a format this version no longer reads."),
					 errhint("Start the walk again from the first page (cursor => NULL).")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid cursor: %s", pulse_cursor_strerror(st))));
	}

	out->backward = fields.backward;
	out->nkeys = (int) fields.nkeys;
	out->keys = palloc0(sizeof(PulseCursorKey) * Max(fields.nkeys, 1));
	for (i = 0; i < fields.nkeys; i++)
	{
		const pulse_cursor_value_t *v = &fields.keys[i];

		out->keys[i].isnull = v->isnull;
		if (v->isnull)
		{
			out->keys[i].text = NULL;
			out->keys[i].len = 0;
			continue;
		}
		out->keys[i].text = palloc(v->len + 1);
		if (v->len > 0)
			memcpy(out->keys[i].text, v->data, v->len);
		out->keys[i].text[v->len] = '\0';
		out->keys[i].len = (int) v->len;
	}
	pfree(buf);
}
