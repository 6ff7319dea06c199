/*-------------------------------------------------------------------------
 *
 * cursor_codec.h
 *		Signed, opaque keyset-pagination cursors: the pure C part.
 *
 * Plain C11 plus OpenSSL 3, no PostgreSQL headers, so that the same file is
 * linked into pulse.so (cursor.c wraps it with palloc and ereport) and into
 * the standalone unit test and libFuzzer target under extension/test/.
 * Nothing here allocates or keeps state: every buffer belongs to the caller
 * and every length is checked.  The token format is described at the top of
 * cursor_codec.c.
 *
 * Every function returns a pulse_cursor_status_t; PULSE_CURSOR_OK is zero and
 * pulse_cursor_strerror() gives a short lower-case reason for the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PULSE_CURSOR_CODEC_H
#define PULSE_CURSOR_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PULSE_CURSOR_VERSION		2	/* 1: pulse 1.0 and 1.1, refused */
#define PULSE_CURSOR_FLAG_BACKWARD	0x01	/* the only defined flag */
#define PULSE_CURSOR_BINDING_LEN	8
#define PULSE_CURSOR_MAC_LEN		32		/* full HMAC-SHA256 */
#define PULSE_CURSOR_MAX_KEYS		32
#define PULSE_CURSOR_MIN_SECRET		32

/* Longest token accepted or produced, in characters (NUL not counted). */
#define PULSE_CURSOR_MAX_TOKEN		8192
/* Decoded bytes of a longest token: payload plus MAC. */
#define PULSE_CURSOR_MAX_RAW		(PULSE_CURSOR_MAX_TOKEN / 4 * 3)
#define PULSE_CURSOR_MAX_PAYLOAD	(PULSE_CURSOR_MAX_RAW - PULSE_CURSOR_MAC_LEN)
/* version, flags, binding, key count */
#define PULSE_CURSOR_HEADER_LEN		(1 + 1 + PULSE_CURSOR_BINDING_LEN + 1)

/* Buffer sizes that are always enough. */
#define PULSE_CURSOR_TOKEN_BUFSIZE	(PULSE_CURSOR_MAX_TOKEN + 1)
#define PULSE_CURSOR_DECODE_BUFSIZE	PULSE_CURSOR_MAX_RAW

typedef enum pulse_cursor_status_t
{
	PULSE_CURSOR_OK = 0,
	PULSE_CURSOR_E_EMPTY,			/* empty token */
	PULSE_CURSOR_E_TOO_LONG,		/* token longer than PULSE_CURSOR_MAX_TOKEN */
	PULSE_CURSOR_E_ENCODING,		/* not canonical unpadded base64url */
	PULSE_CURSOR_E_SIGNATURE,		/* HMAC does not verify */
	PULSE_CURSOR_E_VERSION,			/* format version byte unknown */
	PULSE_CURSOR_E_FLAGS,			/* undefined flag bit set */
	PULSE_CURSOR_E_BINDING,			/* issued for another query/tenant */
	PULSE_CURSOR_E_NKEYS,			/* key count differs from the expected one */
	PULSE_CURSOR_E_TRUNCATED,		/* payload ends inside a field */
	PULSE_CURSOR_E_TRAILING,		/* bytes after the last key */
	PULSE_CURSOR_E_TAG,				/* key tag neither NULL nor value */
	PULSE_CURSOR_E_LENGTH,			/* value length not a minimal varint */
	PULSE_CURSOR_E_TOO_MANY_KEYS,	/* more than PULSE_CURSOR_MAX_KEYS */
	PULSE_CURSOR_E_SECRET,			/* secret shorter than the minimum */
	PULSE_CURSOR_E_BUFFER,			/* caller's output buffer too small */
	PULSE_CURSOR_E_ARGUMENT,		/* NULL pointer or out-of-range argument */
	PULSE_CURSOR_E_CRYPTO			/* OpenSSL failed */
} pulse_cursor_status_t;

/*
 * One sort-key value: NULL, or len opaque bytes at data (any byte, NUL
 * included; not NUL-terminated).  In decoded cursors data points into the
 * caller's buffer.
 */
typedef struct pulse_cursor_value_t
{
	bool		isnull;
	const char *data;
	size_t		len;
} pulse_cursor_value_t;

/* The fields of a cursor, before encoding or after a successful decode. */
typedef struct pulse_cursor_fields_t
{
	bool		backward;
	uint8_t		binding[PULSE_CURSOR_BINDING_LEN];
	size_t		nkeys;
	pulse_cursor_value_t keys[PULSE_CURSOR_MAX_KEYS];
} pulse_cursor_fields_t;

/*
 * Short lower-case reason for a status ("signature mismatch", ...); never
 * NULL, also for values outside the enum.
 */
extern const char *pulse_cursor_strerror(pulse_cursor_status_t status);

/*
 * Binding of a cursor: the first 8 bytes of SHA-256 over a domain label and
 * the nparts strings, each framed by a presence byte and a 64-bit length, so
 * that neither ("ab", "c") and ("a", "bc") nor NULL and "" collide.  Entries
 * of parts may be NULL.
 */
extern pulse_cursor_status_t pulse_cursor_bind(const char *const *parts,
											   size_t nparts,
											   uint8_t out[PULSE_CURSOR_BINDING_LEN]);

/*
 * Serializes fields (without MAC) into out[0..cap); *outlen receives the
 * payload length.  Fails on more than PULSE_CURSOR_MAX_KEYS keys or a payload
 * over PULSE_CURSOR_MAX_PAYLOAD bytes.
 */
extern pulse_cursor_status_t pulse_cursor_payload_build(const pulse_cursor_fields_t *fields,
														uint8_t *out, size_t cap,
														size_t *outlen);

/*
 * Strict parse of an unsigned payload: version, flags, binding equal to
 * binding, exactly expected_nkeys keys, every length in bounds, nothing
 * after the last key.  The value pointers of out point into payload.  This
 * is the part of pulse_cursor_token_decode that runs after the MAC check;
 * it is public so the fuzzer can reach it.
 */
extern pulse_cursor_status_t pulse_cursor_payload_parse(const uint8_t *payload,
														size_t len,
														const uint8_t binding[PULSE_CURSOR_BINDING_LEN],
														size_t expected_nkeys,
														pulse_cursor_fields_t *out);

/*
 * Signs an already serialized payload and writes the token, NUL-terminated,
 * into out[0..cap); *outlen (may be NULL) receives its length.  No parsing:
 * any payload up to PULSE_CURSOR_MAX_PAYLOAD bytes is accepted.
 */
extern pulse_cursor_status_t pulse_cursor_token_sign(const uint8_t *secret,
													 size_t secret_len,
													 const uint8_t *payload,
													 size_t payload_len,
													 char *out, size_t cap,
													 size_t *outlen);

/*
 * pulse_cursor_payload_build followed by pulse_cursor_token_sign.  A buffer
 * of PULSE_CURSOR_TOKEN_BUFSIZE bytes is always enough.
 */
extern pulse_cursor_status_t pulse_cursor_token_encode(const uint8_t *secret,
													   size_t secret_len,
													   const pulse_cursor_fields_t *fields,
													   char *out, size_t cap,
													   size_t *outlen);

/*
 * Verifies and parses the token_len characters at token (no NUL needed).
 * Order: length bounds, strict base64url, HMAC compared in constant time,
 * then pulse_cursor_payload_parse.  buf[0..cap) receives the decoded bytes
 * and the value pointers of out point into it; PULSE_CURSOR_DECODE_BUFSIZE
 * bytes are always enough.  On failure out is unspecified.
 */
extern pulse_cursor_status_t pulse_cursor_token_decode(const uint8_t *secret,
													   size_t secret_len,
													   const char *token,
													   size_t token_len,
													   const uint8_t binding[PULSE_CURSOR_BINDING_LEN],
													   size_t expected_nkeys,
													   uint8_t *buf, size_t cap,
													   pulse_cursor_fields_t *out);

#endif							/* PULSE_CURSOR_CODEC_H */
