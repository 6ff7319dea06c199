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
#include "nodes/pg_list.h"

/* pulse.c */
extern bool pulse_require_index_for_page;
extern char *pulse_tenant;

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
 * The binding a cursor is valid for: the query's fingerprint, the order, the
 * bound arguments and the tenant.  Hashed to 8 bytes inside the token.
 */
extern void pulse_cursor_binding(const char *fingerprint, const char *order_by,
								 const char *args_text, const char *tenant,
								 uint8 out[8]);
extern char *pulse_cursor_encode(const uint8 binding[8], bool backward,
								 int nkeys, const PulseCursorKey *keys);
extern void pulse_cursor_decode(const char *token, const uint8 binding[8],
								int expected_nkeys, PulseCursor *out);

#endif							/* PULSE_H */
