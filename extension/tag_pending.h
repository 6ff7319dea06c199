/*-------------------------------------------------------------------------
 *
 * tag_pending.h
 *		The cache tags a transaction bumps at commit (tag_pending.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_TAG_PENDING_H
#define PULSE_TAG_PENDING_H

#include "postgres.h"

/* Channel of the invalidation messages. */
#define PULSE_TAG_CHANNEL	"pulse_invalidate"
/*
 * Channel of the commit times: before the bumps of a transaction, one
 * NOTIFY pulse_commit, '<microseconds since 1970-01-01 UTC>' with the time
 * its bumps were made (pre-commit; for pulse.bump_tag, the call), so that a
 * listener can tell how long a bump took to reach whatever it caused.  A
 * transaction's notifications reach a listener together and in order, so
 * the bumps that follow a commit time are that transaction's.  Listeners
 * that do not know it never LISTEN to it.
 */
#define PULSE_COMMIT_CHANNEL	"pulse_commit"
/* Longest tag accepted, in bytes: far below the 8000-byte NOTIFY limit. */
#define PULSE_TAG_MAX_LEN	512

/* Raises 22023 unless tag is non-empty and at most PULSE_TAG_MAX_LEN bytes. */
extern void pulse_tag_check_name(const char *tag);

/* The current (sub)transaction wrote something tag depends on (checked). */
extern void pulse_tag_remember(const char *tag);

/*
 * The current (sub)transaction wrote a row whose key column has value
 * (value_len bytes; NULL for SQL NULL) in family "<tag>:<col>": remembers
 * "<family>=<value>" ("<family>" for NULL), or the family's epoch
 * "<family>=*" once pulse.keyed_tag_limit values were remembered or when the
 * tag would be too long.  Returns false once the family's epoch replaced its
 * values (its next values need not be remembered).
 */
extern bool pulse_tag_remember_keyed(const char *family, const char *value,
									 int value_len);

/* Remembers the epoch "<family>=*" in place of every value of family. */
extern void pulse_tag_remember_epoch(const char *family);

/* Bumps tag (checked) now, returns its generation; NOTIFY at commit. */
extern int64 pulse_tag_bump_now(const char *tag);

#endif							/* PULSE_TAG_PENDING_H */
