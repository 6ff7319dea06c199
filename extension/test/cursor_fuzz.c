/*
 * cursor_fuzz.c
 *		libFuzzer target for extension/cursor_codec.c.
 *
 * Every input is used three ways:
 *	 (a) as a token, decoded with a fixed secret, binding and key count;
 *	 (b) as a payload: signed, encoded, then decoded, so the strict parser
 *		 is reached past the signature check;
 *	 (c) as a description of cursor fields, encoded and decoded.
 * Properties (abort() on violation): nothing crashes or reads out of bounds
 * (ASan/UBSan); whatever decodes re-encodes to the very same token and
 * payload; a freshly signed token never fails on encoding or signature; the
 * signed path and the bare parser agree; encoded fields decode to themselves.
 *
 * `make fuzz FUZZ_SECONDS=60`; seeds in extension/test/fuzz-seeds/ (tokens
 * signed with the secret below, payloads, field descriptions).
 */
#include "cursor_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Same secret and binding as the unit test and the seed tokens. */
static const uint8_t fz_secret[32] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
};
static const uint8_t fz_binding[8] = {1, 2, 3, 4, 5, 6, 7, 8};
#define FZ_TOKEN_NKEYS 2		/* key count expected in mode (a) */

static void
fz_fail(const char *what, pulse_cursor_status_t st)
{
	fprintf(stderr, "cursor_fuzz: property violated: %s (%s)\n", what,
			pulse_cursor_strerror(st));
	abort();
}

static bool
fz_fields_equal(const pulse_cursor_fields_t *a, const pulse_cursor_fields_t *b)
{
	size_t		i;

	if (a->backward != b->backward || a->nkeys != b->nkeys ||
		memcmp(a->binding, b->binding, sizeof(a->binding)) != 0)
		return false;
	for (i = 0; i < a->nkeys; i++)
	{
		if (a->keys[i].isnull != b->keys[i].isnull)
			return false;
		if (!a->keys[i].isnull &&
			(a->keys[i].len != b->keys[i].len ||
			 (a->keys[i].len > 0 &&
			  memcmp(a->keys[i].data, b->keys[i].data, a->keys[i].len) != 0)))
			return false;
	}
	return true;
}

/* Decoded fields must re-encode to exactly token[0..len) and payload. */
static void
fz_check_reencode(const pulse_cursor_fields_t *f, const char *token, size_t len,
				  const uint8_t *payload, size_t plen)
{
	static char again[PULSE_CURSOR_TOKEN_BUFSIZE];
	static uint8_t pbuf[PULSE_CURSOR_MAX_PAYLOAD];
	size_t		alen = 0;
	size_t		blen = 0;
	pulse_cursor_status_t st;

	st = pulse_cursor_token_encode(fz_secret, sizeof(fz_secret), f, again,
								   sizeof(again), &alen);
	if (st != PULSE_CURSOR_OK)
		fz_fail("decoded cursor does not re-encode", st);
	if (alen != len || memcmp(again, token, len) != 0)
		fz_fail("re-encoded token differs", st);
	if (payload != NULL)
	{
		st = pulse_cursor_payload_build(f, pbuf, sizeof(pbuf), &blen);
		if (st != PULSE_CURSOR_OK)
			fz_fail("decoded cursor does not rebuild", st);
		if (blen != plen || memcmp(pbuf, payload, plen) != 0)
			fz_fail("rebuilt payload differs", st);
	}
}

/* (a) the input is a token */
static void
fz_token(const uint8_t *data, size_t size)
{
	static uint8_t buf[PULSE_CURSOR_DECODE_BUFSIZE];
	pulse_cursor_fields_t f;
	pulse_cursor_status_t st;

	st = pulse_cursor_token_decode(fz_secret, sizeof(fz_secret),
								   (const char *) data, size, fz_binding,
								   FZ_TOKEN_NKEYS, buf, sizeof(buf), &f);
	if (st == PULSE_CURSOR_OK)
		fz_check_reencode(&f, (const char *) data, size, NULL, 0);
	else if (st == PULSE_CURSOR_E_BUFFER || st == PULSE_CURSOR_E_ARGUMENT ||
			 st == PULSE_CURSOR_E_SECRET || st == PULSE_CURSOR_E_CRYPTO)
		fz_fail("token decode: internal status", st);
}

/* (b) the input is a payload: sign it so the parser is reached */
static void
fz_payload(const uint8_t *data, size_t size)
{
	static char token[PULSE_CURSOR_TOKEN_BUFSIZE];
	static uint8_t buf[PULSE_CURSOR_DECODE_BUFSIZE];
	pulse_cursor_fields_t f;
	pulse_cursor_fields_t g;
	uint8_t		binding[8] = {0};
	size_t		nkeys = 0;
	size_t		tlen = 0;
	pulse_cursor_status_t st;
	pulse_cursor_status_t pst;

	if (size > PULSE_CURSOR_MAX_PAYLOAD)
		return;
	/* expect what the payload claims, so binding and count checks pass */
	if (size >= 10)
		memcpy(binding, data + 2, 8);
	if (size >= 11)
		nkeys = data[10] > PULSE_CURSOR_MAX_KEYS ? PULSE_CURSOR_MAX_KEYS : data[10];

	st = pulse_cursor_token_sign(fz_secret, sizeof(fz_secret), data, size,
								 token, sizeof(token), &tlen);
	if (st != PULSE_CURSOR_OK)
		fz_fail("signing a payload failed", st);
	st = pulse_cursor_token_decode(fz_secret, sizeof(fz_secret), token, tlen,
								   binding, nkeys, buf, sizeof(buf), &f);
	if (st == PULSE_CURSOR_E_ENCODING || st == PULSE_CURSOR_E_SIGNATURE ||
		st == PULSE_CURSOR_E_TOO_LONG || st == PULSE_CURSOR_E_EMPTY ||
		st == PULSE_CURSOR_E_BUFFER || st == PULSE_CURSOR_E_ARGUMENT ||
		st == PULSE_CURSOR_E_CRYPTO)
		fz_fail("freshly signed token rejected before parsing", st);

	pst = pulse_cursor_payload_parse(data, size, binding, nkeys, &g);
	if (size >= PULSE_CURSOR_HEADER_LEN && pst != st)
		fz_fail("signed decode and bare parse disagree", st);
	if (size < PULSE_CURSOR_HEADER_LEN && st != PULSE_CURSOR_E_TRUNCATED)
		fz_fail("short payload not reported as truncated", st);

	if (st == PULSE_CURSOR_OK)
	{
		fz_check_reencode(&f, token, tlen, data, size);
		if (!fz_fields_equal(&f, &g))
			fz_fail("signed decode and bare parse give other fields", st);
	}
}

/*
 * (c) the input describes fields: byte 0 = flags (bit 0 backward), byte 1 =
 * key count mod 33, then values separated by 0xff; a value that is exactly
 * one 0xfe byte is SQL NULL.
 */
static void
fz_fields(const uint8_t *data, size_t size)
{
	static char token[PULSE_CURSOR_TOKEN_BUFSIZE];
	static uint8_t buf[PULSE_CURSOR_DECODE_BUFSIZE];
	pulse_cursor_fields_t f;
	pulse_cursor_fields_t g;
	size_t		pos = 2;
	size_t		i;
	size_t		tlen = 0;
	pulse_cursor_status_t st;

	if (size < 2)
		return;
	memset(&f, 0, sizeof(f));
	f.backward = (data[0] & 1) != 0;
	memcpy(f.binding, fz_binding, sizeof(fz_binding));
	f.nkeys = data[1] % (PULSE_CURSOR_MAX_KEYS + 1);
	for (i = 0; i < f.nkeys; i++)
	{
		size_t		start = pos;

		while (pos < size && data[pos] != 0xff)
			pos++;
		if (pos - start == 1 && data[start] == 0xfe)
			f.keys[i].isnull = true;
		else
		{
			f.keys[i].data = (const char *) data + start;
			f.keys[i].len = pos - start;
		}
		if (pos < size)
			pos++;				/* separator */
	}

	st = pulse_cursor_token_encode(fz_secret, sizeof(fz_secret), &f, token,
								   sizeof(token), &tlen);
	if (st == PULSE_CURSOR_E_TOO_LONG)
		return;					/* inputs are capped below that anyway */
	if (st != PULSE_CURSOR_OK)
		fz_fail("valid fields not encoded", st);
	if (tlen > PULSE_CURSOR_MAX_TOKEN || strlen(token) != tlen)
		fz_fail("token length", st);

	st = pulse_cursor_token_decode(fz_secret, sizeof(fz_secret), token, tlen,
								   fz_binding, f.nkeys, buf, sizeof(buf), &g);
	if (st != PULSE_CURSOR_OK)
		fz_fail("encoded fields do not decode", st);
	if (!fz_fields_equal(&f, &g))
		fz_fail("encoded fields decode to other fields", st);
	fz_check_reencode(&g, token, tlen, NULL, 0);

	/* and with any other key count or binding it must be refused */
	st = pulse_cursor_token_decode(fz_secret, sizeof(fz_secret), token, tlen,
								   fz_binding, (f.nkeys + 1) % (PULSE_CURSOR_MAX_KEYS + 1),
								   buf, sizeof(buf), &g);
	if (st != PULSE_CURSOR_E_NKEYS)
		fz_fail("wrong key count accepted", st);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_token(data, size);
	fz_payload(data, size);
	fz_fields(data, size);
	return 0;
}
