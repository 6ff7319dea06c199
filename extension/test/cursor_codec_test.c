/*
 * cursor_codec_test.c
 *		Standalone unit tests of extension/cursor_codec.c (no server).
 *
 * Built and run by `make unit` with ASan and UBSan.  Prints one line per
 * failed check and ends with "N passed, M failed"; exits non-zero when M > 0.
 */
#include "cursor_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	n_passed;
static int	n_failed;

#define CHECK(cond, ...) \
	do { \
		if (cond) \
			n_passed++; \
		else \
		{ \
			n_failed++; \
			printf("FAIL %s:%d: ", __FILE__, __LINE__); \
			printf(__VA_ARGS__); \
			printf("\n"); \
		} \
	} while (0)

#define CHECK_ST(got, want, what) \
	CHECK((got) == (want), "%s: got \"%s\", want \"%s\"", (what), \
		  pulse_cursor_strerror(got), pulse_cursor_strerror(want))

static const uint8_t secret[32] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
};
static const uint8_t binding[8] = {1, 2, 3, 4, 5, 6, 7, 8};

/* Scratch shared by the tests; the tests are sequential. */
static char token[PULSE_CURSOR_TOKEN_BUFSIZE];
static char token2[PULSE_CURSOR_TOKEN_BUFSIZE + 16];
static uint8_t dbuf[PULSE_CURSOR_DECODE_BUFSIZE];
static uint8_t payload[PULSE_CURSOR_MAX_PAYLOAD + 16];
static char bigvalue[PULSE_CURSOR_MAX_PAYLOAD + 16];

static void
fields_init(pulse_cursor_fields_t *f, bool backward, size_t nkeys)
{
	memset(f, 0, sizeof(*f));
	f->backward = backward;
	memcpy(f->binding, binding, sizeof(binding));
	f->nkeys = nkeys;
}

static void
set_value(pulse_cursor_fields_t *f, size_t i, const char *s)
{
	f->keys[i].isnull = (s == NULL);
	f->keys[i].data = s;
	f->keys[i].len = s ? strlen(s) : 0;
}

static bool
fields_equal(const pulse_cursor_fields_t *a, const pulse_cursor_fields_t *b)
{
	size_t		i;

	if (a->backward != b->backward || a->nkeys != b->nkeys ||
		memcmp(a->binding, b->binding, sizeof(a->binding)) != 0)
		return false;
	for (i = 0; i < a->nkeys; i++)
	{
		if (a->keys[i].isnull != b->keys[i].isnull)
			return false;
		if (a->keys[i].isnull)
			continue;
		if (a->keys[i].len != b->keys[i].len ||
			(a->keys[i].len > 0 &&
			 memcmp(a->keys[i].data, b->keys[i].data, a->keys[i].len) != 0))
			return false;
	}
	return true;
}

static pulse_cursor_status_t
decode(const char *tok, size_t len, const uint8_t *bind, size_t nkeys,
	   pulse_cursor_fields_t *out)
{
	return pulse_cursor_token_decode(secret, sizeof(secret), tok, len, bind,
									 nkeys, dbuf, sizeof(dbuf), out);
}

/* Encodes f, decodes it back, compares; returns the token length or 0. */
static size_t
round_trip(const pulse_cursor_fields_t *f, const char *what)
{
	pulse_cursor_fields_t got;
	size_t		len = 0;
	pulse_cursor_status_t st;

	st = pulse_cursor_token_encode(secret, sizeof(secret), f, token,
								   sizeof(token), &len);
	CHECK_ST(st, PULSE_CURSOR_OK, what);
	if (st != PULSE_CURSOR_OK)
		return 0;
	CHECK(len == strlen(token), "%s: length %zu vs strlen %zu", what, len,
		  strlen(token));
	st = decode(token, len, f->binding, f->nkeys, &got);
	CHECK_ST(st, PULSE_CURSOR_OK, what);
	if (st != PULSE_CURSOR_OK)
		return 0;
	CHECK(fields_equal(f, &got), "%s: decoded fields differ", what);
	return len;
}

/* Signs a raw payload and decodes it with the test binding and nkeys. */
static pulse_cursor_status_t
sign_and_decode(const uint8_t *p, size_t plen, size_t nkeys)
{
	pulse_cursor_fields_t got;
	size_t		len = 0;
	pulse_cursor_status_t st;

	st = pulse_cursor_token_sign(secret, sizeof(secret), p, plen, token2,
								 sizeof(token2), &len);
	if (st != PULSE_CURSOR_OK)
		return st;
	return decode(token2, len, binding, nkeys, &got);
}

/* Header of a test payload with nkeys keys; returns its length. */
static size_t
header(uint8_t *p, uint8_t version, uint8_t flags, uint8_t nkeys)
{
	p[0] = version;
	p[1] = flags;
	memcpy(p + 2, binding, 8);
	p[10] = nkeys;
	return PULSE_CURSOR_HEADER_LEN;
}

static void
test_known_answer(void)
{
	pulse_cursor_fields_t f;
	const char *expect = "AgEBAgMEBQYHCAMAAQABA2FiY1Sf18vMhrcCymw7_PZErr59vNzSm9TmcTP7oadkoq48";
	const char *parts[4] = {"fp", "ob", NULL, ""};
	const uint8_t bexpect[8] = {0xc0, 0x68, 0x2a, 0x7a, 0x16, 0x34, 0x35, 0x10};
	uint8_t		b[8];
	size_t		len = 0;

	/* computed independently with Python's hmac, hashlib and base64 */
	fields_init(&f, true, 3);
	set_value(&f, 0, NULL);
	set_value(&f, 1, "");
	set_value(&f, 2, "abc");
	CHECK_ST(pulse_cursor_token_encode(secret, sizeof(secret), &f, token,
									   sizeof(token), &len),
			 PULSE_CURSOR_OK, "known answer encode");
	CHECK(strcmp(token, expect) == 0, "known answer token: %s", token);

	CHECK_ST(pulse_cursor_bind(parts, 4, b), PULSE_CURSOR_OK, "bind");
	CHECK(memcmp(b, bexpect, 8) == 0, "known answer binding");
}

static void
test_binding(void)
{
	const char *ab_c[2] = {"ab", "c"};
	const char *a_bc[2] = {"a", "bc"};
	const char *null_empty[2] = {NULL, ""};
	const char *empty_null[2] = {"", NULL};
	const char *empty_empty[2] = {"", ""};
	const char *one[1] = {"abc"};
	uint8_t		b1[8],
				b2[8],
				b3[8],
				b4[8],
				b5[8],
				b6[8];

	CHECK_ST(pulse_cursor_bind(ab_c, 2, b1), PULSE_CURSOR_OK, "bind ab,c");
	CHECK_ST(pulse_cursor_bind(a_bc, 2, b2), PULSE_CURSOR_OK, "bind a,bc");
	CHECK(memcmp(b1, b2, 8) != 0, "(ab,c) and (a,bc) collide");
	CHECK_ST(pulse_cursor_bind(null_empty, 2, b3), PULSE_CURSOR_OK, "bind");
	CHECK_ST(pulse_cursor_bind(empty_null, 2, b4), PULSE_CURSOR_OK, "bind");
	CHECK_ST(pulse_cursor_bind(empty_empty, 2, b5), PULSE_CURSOR_OK, "bind");
	CHECK(memcmp(b3, b4, 8) != 0 && memcmp(b3, b5, 8) != 0 &&
		  memcmp(b4, b5, 8) != 0, "NULL and empty collide");
	CHECK_ST(pulse_cursor_bind(one, 1, b6), PULSE_CURSOR_OK, "bind one");
	CHECK(memcmp(b6, b1, 8) != 0, "part count not framed");
	CHECK_ST(pulse_cursor_bind(ab_c, 2, b2), PULSE_CURSOR_OK, "bind again");
	CHECK(memcmp(b1, b2, 8) == 0, "binding not deterministic");
	CHECK_ST(pulse_cursor_bind(NULL, 0, b2), PULSE_CURSOR_OK, "bind nothing");
	CHECK_ST(pulse_cursor_bind(NULL, 1, b2), PULSE_CURSOR_E_ARGUMENT,
			 "bind NULL parts");
}

static void
test_round_trips(void)
{
	pulse_cursor_fields_t f;
	char		binary[300];
	char		what[64];
	size_t		n,
				i,
				len;

	for (i = 0; i < sizeof(binary); i++)
		binary[i] = (char) (i % 256);	/* every byte, NUL included */

	for (n = 0; n <= PULSE_CURSOR_MAX_KEYS; n++)
	{
		static const char *samples[] = {
			"42", "", NULL, "2024-01-01 00:00:00+00", "héllo wörld ✓",
			"a'b\"c\\d", "-", "_=+/ \t\n"
		};

		snprintf(what, sizeof(what), "%zu keys", n);
		fields_init(&f, n % 2 == 1, n);
		for (i = 0; i < n; i++)
			set_value(&f, i, samples[(i + n) % (sizeof(samples) / sizeof(samples[0]))]);
		round_trip(&f, what);

		snprintf(what, sizeof(what), "%zu NULL keys", n);
		fields_init(&f, false, n);
		for (i = 0; i < n; i++)
			set_value(&f, i, NULL);
		round_trip(&f, what);
	}

	/* binary-ish bytes, and every value length around the varint boundary */
	fields_init(&f, false, 1);
	f.keys[0].data = binary;
	f.keys[0].len = sizeof(binary);
	round_trip(&f, "all bytes");
	for (len = 0; len <= 260; len++)
	{
		snprintf(what, sizeof(what), "value of %zu bytes", len);
		f.keys[0].len = len;
		f.keys[0].data = binary;
		round_trip(&f, what);
	}

	/* the largest payload gives exactly the largest token */
	memset(bigvalue, 'x', sizeof(bigvalue));
	fields_init(&f, true, 1);
	f.keys[0].data = bigvalue;
	f.keys[0].len = PULSE_CURSOR_MAX_PAYLOAD - PULSE_CURSOR_HEADER_LEN - 3;
	len = round_trip(&f, "largest single value");
	CHECK(len == PULSE_CURSOR_MAX_TOKEN, "largest token has %zu chars", len);
	f.keys[0].len++;
	CHECK_ST(pulse_cursor_token_encode(secret, sizeof(secret), &f, token,
									   sizeof(token), NULL),
			 PULSE_CURSOR_E_TOO_LONG, "one byte over the largest value");

	/* 32 keys sharing the space */
	fields_init(&f, false, PULSE_CURSOR_MAX_KEYS);
	for (i = 0; i < PULSE_CURSOR_MAX_KEYS; i++)
	{
		f.keys[i].data = bigvalue;
		f.keys[i].len = (PULSE_CURSOR_MAX_PAYLOAD - PULSE_CURSOR_HEADER_LEN) /
			PULSE_CURSOR_MAX_KEYS - 3;
	}
	round_trip(&f, "32 large keys");

	/* payload_build / payload_parse agree */
	{
		pulse_cursor_fields_t got;
		size_t		plen = 0;

		fields_init(&f, true, 3);
		set_value(&f, 0, "a");
		set_value(&f, 1, NULL);
		set_value(&f, 2, "");
		CHECK_ST(pulse_cursor_payload_build(&f, payload, sizeof(payload), &plen),
				 PULSE_CURSOR_OK, "payload build");
		CHECK(plen == PULSE_CURSOR_HEADER_LEN + 3 + 1 + 2, "payload length %zu", plen);
		CHECK_ST(pulse_cursor_payload_parse(payload, plen, binding, 3, &got),
				 PULSE_CURSOR_OK, "payload parse");
		CHECK(fields_equal(&f, &got), "payload parse differs");
	}
}

static void
test_token_mutations(void)
{
	pulse_cursor_fields_t f,
				got;
	uint8_t		raw[PULSE_CURSOR_MAX_RAW];
	size_t		len,
				i,
				plen = 0;
	int			bit;
	char		what[96];
	pulse_cursor_status_t st;

	fields_init(&f, false, 4);
	set_value(&f, 0, "2024-05-01");
	set_value(&f, 1, NULL);
	set_value(&f, 2, "");
	set_value(&f, 3, "12345");
	len = round_trip(&f, "mutation base");
	memcpy(token2, token, len + 1);

	/* every single-bit flip of every character */
	for (i = 0; i < len; i++)
		for (bit = 0; bit < 8; bit++)
		{
			token2[i] = (char) (token[i] ^ (1 << bit));
			st = decode(token2, len, binding, 4, &got);
			snprintf(what, sizeof(what), "char %zu bit %d flipped", i, bit);
			CHECK(st != PULSE_CURSOR_OK, "%s: accepted", what);
			CHECK(st == PULSE_CURSOR_E_ENCODING || st == PULSE_CURSOR_E_SIGNATURE,
				  "%s: unexpected \"%s\"", what, pulse_cursor_strerror(st));
			token2[i] = token[i];
		}

	/* every single-bit flip of the decoded bytes (payload and MAC) */
	CHECK_ST(pulse_cursor_payload_build(&f, raw, sizeof(raw), &plen),
			 PULSE_CURSOR_OK, "build for bit flips");
	for (i = 0; i < plen; i++)
		for (bit = 0; bit < 8; bit++)
		{
			size_t		tlen = 0;

			raw[i] ^= (uint8_t) (1 << bit);
			/* sign the flipped payload with another secret: forged MAC */
			{
				uint8_t		other[32];

				memcpy(other, secret, 32);
				other[0] ^= 0x80;
				st = pulse_cursor_token_sign(other, 32, raw, plen, token2,
											 sizeof(token2), &tlen);
			}
			CHECK_ST(st, PULSE_CURSOR_OK, "sign flipped payload");
			st = decode(token2, tlen, binding, 4, &got);
			snprintf(what, sizeof(what), "payload byte %zu bit %d flipped", i, bit);
			CHECK_ST(st, PULSE_CURSOR_E_SIGNATURE, what);
			raw[i] ^= (uint8_t) (1 << bit);
		}

	/* every truncation */
	for (i = 0; i < len; i++)
	{
		st = decode(token, i, binding, 4, &got);
		snprintf(what, sizeof(what), "truncated to %zu chars", i);
		CHECK(st != PULSE_CURSOR_OK, "%s: accepted", what);
		if (i == 0)
			CHECK_ST(st, PULSE_CURSOR_E_EMPTY, what);
		else if (i % 4 == 1)
			CHECK_ST(st, PULSE_CURSOR_E_ENCODING, what);
	}

	/* context */
	{
		uint8_t		other[8];

		memcpy(other, binding, 8);
		other[7] ^= 1;
		CHECK_ST(decode(token, len, other, 4, &got), PULSE_CURSOR_E_BINDING,
				 "wrong binding");
	}
	CHECK_ST(decode(token, len, binding, 3, &got), PULSE_CURSOR_E_NKEYS,
			 "fewer keys expected");
	CHECK_ST(decode(token, len, binding, 5, &got), PULSE_CURSOR_E_NKEYS,
			 "more keys expected");
	CHECK_ST(decode(token, len, binding, 33, &got), PULSE_CURSOR_E_TOO_MANY_KEYS,
			 "33 keys expected");
	{
		uint8_t		other[32];

		memcpy(other, secret, 32);
		other[31] ^= 1;
		CHECK_ST(pulse_cursor_token_decode(other, 32, token, len, binding, 4,
										   dbuf, sizeof(dbuf), &got),
				 PULSE_CURSOR_E_SIGNATURE, "wrong secret");
		CHECK_ST(pulse_cursor_token_decode(secret, 31, token, len, binding, 4,
										   dbuf, sizeof(dbuf), &got),
				 PULSE_CURSOR_E_SECRET, "short secret");
	}

	/* padding, alphabet, whitespace */
	{
		static const char *suffixes[] = {"=", "==", "===", "====", " ", "\n", "A"};
		static const char bad[] = {'=', '+', '/', ' ', '\t', '\n', '\r', '.',
			'~', '\0', '\x7f', '\x80', '\xc3', '\xff'};

		for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		{
			size_t		sl = strlen(suffixes[i]);

			memcpy(token2, token, len);
			memcpy(token2 + len, suffixes[i], sl + 1);
			snprintf(what, sizeof(what), "suffix %zu appended", i);
			st = decode(token2, len + sl, binding, 4, &got);
			if (suffixes[i][0] == 'A')
				CHECK(st == PULSE_CURSOR_E_ENCODING || st == PULSE_CURSOR_E_SIGNATURE,
					  "%s: %s", what, pulse_cursor_strerror(st));
			else
				CHECK_ST(st, PULSE_CURSOR_E_ENCODING, what);
		}
		for (i = 0; i < sizeof(bad); i++)
		{
			size_t		pos;

			for (pos = 0; pos < len; pos += len / 7)
			{
				memcpy(token2, token, len + 1);
				token2[pos] = bad[i];
				snprintf(what, sizeof(what), "byte 0x%02x at %zu",
						 (unsigned char) bad[i], pos);
				CHECK_ST(decode(token2, len, binding, 4, &got),
						 PULSE_CURSOR_E_ENCODING, what);
			}
		}
		/* leading whitespace */
		token2[0] = ' ';
		memcpy(token2 + 1, token, len + 1);
		CHECK_ST(decode(token2, len + 1, binding, 4, &got),
				 PULSE_CURSOR_E_ENCODING, "leading space");
	}

	/* oversize */
	{
		static char huge[PULSE_CURSOR_MAX_TOKEN + 2];

		memset(huge, 'A', sizeof(huge));
		CHECK_ST(decode(huge, PULSE_CURSOR_MAX_TOKEN + 1, binding, 4, &got),
				 PULSE_CURSOR_E_TOO_LONG, "8193 chars");
		CHECK_ST(decode(huge, PULSE_CURSOR_MAX_TOKEN + 2, binding, 4, &got),
				 PULSE_CURSOR_E_TOO_LONG, "8194 chars");
		CHECK_ST(decode(huge, PULSE_CURSOR_MAX_TOKEN, binding, 4, &got),
				 PULSE_CURSOR_E_SIGNATURE, "8192 chars of A");
		huge[10] = '=';
		CHECK_ST(decode(huge, PULSE_CURSOR_MAX_TOKEN + 1, binding, 4, &got),
				 PULSE_CURSOR_E_TOO_LONG, "length checked before alphabet");
		CHECK_ST(decode(huge, (size_t) -1, binding, 4, &got),
				 PULSE_CURSOR_E_TOO_LONG, "SIZE_MAX length");
	}

	/* buffers */
	CHECK_ST(pulse_cursor_token_decode(secret, 32, token, len, binding, 4,
									   dbuf, 10, &got),
			 PULSE_CURSOR_E_BUFFER, "small decode buffer");
	CHECK_ST(pulse_cursor_token_encode(secret, 32, &f, token2, len, NULL),
			 PULSE_CURSOR_E_BUFFER, "no room for the NUL");
	CHECK_ST(pulse_cursor_token_encode(secret, 32, &f, token2, len + 1, NULL),
			 PULSE_CURSOR_OK, "exact buffer");
	CHECK_ST(pulse_cursor_token_decode(secret, 32, NULL, 0, binding, 4,
									   dbuf, sizeof(dbuf), &got),
			 PULSE_CURSOR_E_EMPTY, "NULL empty token");
	CHECK_ST(pulse_cursor_token_decode(secret, 32, NULL, 5, binding, 4,
									   dbuf, sizeof(dbuf), &got),
			 PULSE_CURSOR_E_ARGUMENT, "NULL token");
	CHECK_ST(pulse_cursor_token_decode(secret, 32, token, len, NULL, 4,
									   dbuf, sizeof(dbuf), &got),
			 PULSE_CURSOR_E_ARGUMENT, "NULL binding");
}

/* Trailing base64 bits must be zero, for both partial-group lengths. */
static void
test_noncanonical_bits(void)
{
	pulse_cursor_fields_t f,
				got;
	char		value[4] = "abc";
	size_t		vlen,
				len;
	int			seen2 = 0,
				seen3 = 0;

	for (vlen = 0; vlen < 3; vlen++)
	{
		char		last;
		int			v,
					lowbits,
					b;
		char		what[64];
		static const char alphabet[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

		fields_init(&f, false, 1);
		f.keys[0].data = value;
		f.keys[0].len = vlen;
		len = round_trip(&f, "canonical bits base");
		if (len % 4 == 0)
			continue;
		seen2 += len % 4 == 2;
		seen3 += len % 4 == 3;
		lowbits = len % 4 == 2 ? 15 : 3;
		last = token[len - 1];
		v = (int) (strchr(alphabet, last) - alphabet);
		for (b = 1; b <= lowbits; b++)
		{
			memcpy(token2, token, len + 1);
			token2[len - 1] = alphabet[(v & ~lowbits) | b];
			snprintf(what, sizeof(what), "rem %zu low bits %d", len % 4, b);
			CHECK_ST(decode(token2, len, binding, 1, &got),
					 PULSE_CURSOR_E_ENCODING, what);
		}
	}
	CHECK(seen2 && seen3, "did not cover both partial groups");
}

/* Signed payloads that the parser must reject, one reason each. */
static void
test_parser(void)
{
	size_t		n,
				i;

	/* header truncations: rejected before the MAC (too short) or by it */
	for (i = 0; i < PULSE_CURSOR_HEADER_LEN; i++)
	{
		char		what[64];

		header(payload, PULSE_CURSOR_VERSION, 0, 0);
		snprintf(what, sizeof(what), "header cut at %zu", i);
		CHECK_ST(sign_and_decode(payload, i, 0), PULSE_CURSOR_E_TRUNCATED, what);
		CHECK_ST(pulse_cursor_payload_parse(payload, i, binding, 0,
											&(pulse_cursor_fields_t) {0}),
				 PULSE_CURSOR_E_TRUNCATED, what);
	}

	/* version 1 (pulse 1.0 and 1.1) is refused, signature and all */
	n = header(payload, 1, 0, 0);
	CHECK_ST(sign_and_decode(payload, n, 0), PULSE_CURSOR_E_VERSION, "version 1");
	n = header(payload, 3, 0, 0);
	CHECK_ST(sign_and_decode(payload, n, 0), PULSE_CURSOR_E_VERSION, "version 3");
	n = header(payload, 0, 0, 0);
	CHECK_ST(sign_and_decode(payload, n, 0), PULSE_CURSOR_E_VERSION, "version 0");
	for (i = 1; i < 8; i++)
	{
		n = header(payload, PULSE_CURSOR_VERSION, (uint8_t) (1u << i), 0);
		CHECK_ST(sign_and_decode(payload, n, 0), PULSE_CURSOR_E_FLAGS, "flag bit");
	}
	n = header(payload, PULSE_CURSOR_VERSION, 1, 0);
	CHECK_ST(sign_and_decode(payload, n, 0), PULSE_CURSOR_OK, "backward flag");
	n = header(payload, PULSE_CURSOR_VERSION, 0, 0);
	payload[n++] = 0;
	CHECK_ST(sign_and_decode(payload, n, 0), PULSE_CURSOR_E_TRAILING,
			 "trailing byte");
	n = header(payload, PULSE_CURSOR_VERSION, 0, 1);
	CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_TRUNCATED,
			 "missing key");
	n = header(payload, PULSE_CURSOR_VERSION, 0, 33);
	CHECK_ST(sign_and_decode(payload, n, 32), PULSE_CURSOR_E_NKEYS, "33 keys");
	n = header(payload, PULSE_CURSOR_VERSION, 0, 255);
	CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_NKEYS, "255 keys");

	for (i = 2; i < 256; i++)
	{
		n = header(payload, PULSE_CURSOR_VERSION, 0, 1);
		payload[n++] = (uint8_t) i;
		payload[n++] = 0;
		CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_TAG, "bad tag");
	}

	n = header(payload, PULSE_CURSOR_VERSION, 0, 1);
	payload[n++] = 1;
	CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_TRUNCATED,
			 "missing length");
	payload[n++] = 0x85;
	CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_TRUNCATED,
			 "half a varint");
	payload[n++] = 0x00;
	CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_LENGTH,
			 "non-minimal varint");
	n = header(payload, PULSE_CURSOR_VERSION, 0, 1);
	payload[n++] = 1;
	payload[n++] = 0x80;
	payload[n++] = 0x80;
	payload[n++] = 0x01;
	CHECK_ST(sign_and_decode(payload, n, 1), PULSE_CURSOR_E_LENGTH,
			 "three-byte varint");
	n = header(payload, PULSE_CURSOR_VERSION, 0, 1);
	payload[n++] = 1;
	payload[n++] = 5;
	memcpy(payload + n, "abcd", 4);
	CHECK_ST(sign_and_decode(payload, n + 4, 1), PULSE_CURSOR_E_TRUNCATED,
			 "value cut short");
	memcpy(payload + n, "ab\0de", 5);
	CHECK_ST(sign_and_decode(payload, n + 5, 1), PULSE_CURSOR_OK,
			 "NUL in value");
	memcpy(payload + n, "abcde", 5);
	CHECK_ST(sign_and_decode(payload, n + 5, 1), PULSE_CURSOR_OK, "five bytes");
	CHECK_ST(sign_and_decode(payload, n + 6, 1), PULSE_CURSOR_E_TRAILING,
			 "one byte after the value");

	/* two-byte varint of 128 is 0x80 0x01 */
	n = header(payload, PULSE_CURSOR_VERSION, 0, 1);
	payload[n++] = 1;
	payload[n++] = 0x80;
	payload[n++] = 0x01;
	memset(payload + n, 'q', 128);
	CHECK_ST(sign_and_decode(payload, n + 128, 1), PULSE_CURSOR_OK,
			 "128-byte value");
	CHECK_ST(pulse_cursor_token_sign(secret, 32, payload,
									 PULSE_CURSOR_MAX_PAYLOAD + 1, token2,
									 sizeof(token2), NULL),
			 PULSE_CURSOR_E_TOO_LONG, "oversize payload");
}

static void
test_encoder_rejects(void)
{
	pulse_cursor_fields_t f;
	size_t		plen;

	fields_init(&f, false, PULSE_CURSOR_MAX_KEYS + 1);
	CHECK_ST(pulse_cursor_token_encode(secret, 32, &f, token, sizeof(token), NULL),
			 PULSE_CURSOR_E_TOO_MANY_KEYS, "33 keys");
	fields_init(&f, false, 1);
	f.keys[0].data = "\0\0\0";
	f.keys[0].len = 3;
	round_trip(&f, "NUL bytes in value");
	f.keys[0].data = NULL;
	f.keys[0].len = 3;
	CHECK_ST(pulse_cursor_token_encode(secret, 32, &f, token, sizeof(token), NULL),
			 PULSE_CURSOR_E_ARGUMENT, "NULL data");
	f.keys[0].data = bigvalue;
	f.keys[0].len = (size_t) -1;
	CHECK_ST(pulse_cursor_token_encode(secret, 32, &f, token, sizeof(token), NULL),
			 PULSE_CURSOR_E_TOO_LONG, "SIZE_MAX value");
	f.keys[0].len = 10;
	CHECK_ST(pulse_cursor_payload_build(&f, payload, 12, &plen),
			 PULSE_CURSOR_E_BUFFER, "small payload buffer");
	CHECK_ST(pulse_cursor_token_encode(secret, 16, &f, token, sizeof(token), NULL),
			 PULSE_CURSOR_E_SECRET, "short secret");
	CHECK_ST(pulse_cursor_token_encode(NULL, 32, &f, token, sizeof(token), NULL),
			 PULSE_CURSOR_E_SECRET, "NULL secret");
}

static void
test_strerror(void)
{
	int			a,
				b;

	for (a = PULSE_CURSOR_OK; a <= PULSE_CURSOR_E_CRYPTO; a++)
	{
		const char *s = pulse_cursor_strerror((pulse_cursor_status_t) a);

		CHECK(s != NULL && s[0] != '\0' && strcmp(s, "unknown error") != 0,
			  "status %d has no message", a);
		for (b = PULSE_CURSOR_OK; b < a; b++)
			CHECK(strcmp(s, pulse_cursor_strerror((pulse_cursor_status_t) b)) != 0,
				  "statuses %d and %d share a message", a, b);
	}
	CHECK(strcmp(pulse_cursor_strerror((pulse_cursor_status_t) 999),
				 "unknown error") == 0, "out-of-range status");
	CHECK(strcmp(pulse_cursor_strerror(PULSE_CURSOR_E_SIGNATURE),
				 "signature mismatch") == 0, "signature message");
	CHECK(strcmp(pulse_cursor_strerror(PULSE_CURSOR_E_BINDING),
				 "bound to another query") == 0, "binding message");
}

int
main(void)
{
	test_known_answer();
	test_binding();
	test_round_trips();
	test_token_mutations();
	test_noncanonical_bits();
	test_parser();
	test_encoder_rejects();
	test_strerror();

	printf("%d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
