/*-------------------------------------------------------------------------
 *
 * cursor_codec.c
 *		Encoding, signing, verification and strict parsing of pulse's
 *		keyset-pagination cursors.  Pure C11 plus OpenSSL 3; see
 *		cursor_codec.h for the API and cursor.c for the backend wrapper.
 *
 * Token format (version 2)
 * ------------------------
 * token   = base64url(payload || mac), RFC 4648 section 5, no '=' padding,
 *           at most PULSE_CURSOR_MAX_TOKEN (8192) characters
 * mac     = HMAC-SHA256(secret, payload), all 32 bytes; secret >= 32 bytes
 * payload = version   1 byte, always 2
 *           flags     1 byte, bit 0 = backward, every other bit must be 0
 *           binding   8 bytes, from pulse_cursor_bind()
 *           nkeys     1 byte, 0..32
 *           nkeys times:
 *             tag     1 byte: 0 = SQL NULL (nothing follows), 1 = value
 *             len     value only: unsigned LEB128, minimal, 1 or 2 bytes
 *                     (a payload never exceeds 6112 bytes < 2^14)
 *             bytes   value only: len opaque bytes (pulse stores the
 *                     type's binary send form, so NUL bytes are allowed)
 *
 * Version 2 (pulse 1.2) has the layout of version 1 and differs in what
 * the binding stands for (cursor.c): version 1 bound the query's
 * fingerprint, which ignores literal values, so a cursor was accepted by a
 * query that differed only in a literal and its keys read with that query's
 * types.  A version 1 token is refused (PULSE_CURSOR_E_VERSION, checked
 * after the MAC like every other field); the walk starts again from the
 * first page.
 *
 * Every valid token has exactly one encoding: the base64url text must be
 * canonical (no padding, no whitespace, only A-Z a-z 0-9 '-' '_', unused
 * trailing bits zero, length mod 4 != 1), the LEB128 lengths minimal and no
 * byte may follow the last key.  So decode-then-encode reproduces the token
 * byte for byte, which the fuzzer checks.
 *
 * Decoding runs cheap checks first and never interprets an unsigned byte:
 * length bounds, strict alphabet, then the MAC (compared with CRYPTO_memcmp)
 * and only then the parse of version, flags, binding, key count, lengths and
 * trailing bytes.  Every failure has its own status code.
 *
 * Nothing here allocates (OpenSSL may, internally) or keeps state: buffers
 * come from the caller, scratch space lives on the stack (at most about
 * 6 KiB per call).
 *
 *-------------------------------------------------------------------------
 */
#include "cursor_codec.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define CUR_TAG_NULL	0
#define CUR_TAG_VALUE	1

static const char cur_b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Domain label hashed in front of the binding parts. */
static const char cur_binding_label[] = "pulse.cursor.binding.v1";

const char *
pulse_cursor_strerror(pulse_cursor_status_t status)
{
	switch (status)
	{
		case PULSE_CURSOR_OK:
			return "ok";
		case PULSE_CURSOR_E_EMPTY:
			return "empty";
		case PULSE_CURSOR_E_TOO_LONG:
			return "too long";
		case PULSE_CURSOR_E_ENCODING:
			return "malformed encoding";
		case PULSE_CURSOR_E_SIGNATURE:
			return "signature mismatch";
		case PULSE_CURSOR_E_VERSION:
			return "unsupported version";
		case PULSE_CURSOR_E_FLAGS:
			return "unknown flags";
		case PULSE_CURSOR_E_BINDING:
			return "bound to another query";
		case PULSE_CURSOR_E_NKEYS:
			return "wrong number of keys";
		case PULSE_CURSOR_E_TRUNCATED:
			return "truncated";
		case PULSE_CURSOR_E_TRAILING:
			return "trailing bytes";
		case PULSE_CURSOR_E_TAG:
			return "bad key tag";
		case PULSE_CURSOR_E_LENGTH:
			return "bad value length";
		case PULSE_CURSOR_E_TOO_MANY_KEYS:
			return "too many keys";
		case PULSE_CURSOR_E_SECRET:
			return "secret too short";
		case PULSE_CURSOR_E_BUFFER:
			return "buffer too small";
		case PULSE_CURSOR_E_ARGUMENT:
			return "invalid argument";
		case PULSE_CURSOR_E_CRYPTO:
			return "cryptographic failure";
	}
	return "unknown error";
}

/* ---------------------------------------------------------------------
 * base64url without padding
 * --------------------------------------------------------------------- */

/* Characters needed for n bytes. */
static size_t
cur_b64_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/* Writes cur_b64_encoded_len(n) characters to out; no NUL. */
static void
cur_b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t		i = 0;
	size_t		o = 0;

	for (; i + 3 <= n; i += 3)
	{
		uint32_t	v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];

		out[o++] = cur_b64_alphabet[v >> 18 & 63];
		out[o++] = cur_b64_alphabet[v >> 12 & 63];
		out[o++] = cur_b64_alphabet[v >> 6 & 63];
		out[o++] = cur_b64_alphabet[v & 63];
	}
	if (n - i == 1)
	{
		uint32_t	v = (uint32_t) in[i] << 16;

		out[o++] = cur_b64_alphabet[v >> 18 & 63];
		out[o++] = cur_b64_alphabet[v >> 12 & 63];
	}
	else if (n - i == 2)
	{
		uint32_t	v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;

		out[o++] = cur_b64_alphabet[v >> 18 & 63];
		out[o++] = cur_b64_alphabet[v >> 12 & 63];
		out[o++] = cur_b64_alphabet[v >> 6 & 63];
	}
}

/* Value of a base64url character, or -1 (ASCII assumed). */
static int
cur_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict decode of n characters into out[0..cap); *outlen gets the byte
 * count.  Rejects anything but the canonical unpadded encoding.
 */
static pulse_cursor_status_t
cur_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap,
			   size_t *outlen)
{
	size_t		rem = n % 4;
	size_t		need;
	size_t		i = 0;
	size_t		o = 0;
	int			v[4];
	int			k;

	if (rem == 1)
		return PULSE_CURSOR_E_ENCODING;
	need = n / 4 * 3 + (rem == 0 ? 0 : rem - 1);

	/* Alphabet first, so that a bad character never reads as "too small". */
	for (i = 0; i < n; i++)
		if (cur_b64_value((unsigned char) in[i]) < 0)
			return PULSE_CURSOR_E_ENCODING;
	if (need > cap)
		return PULSE_CURSOR_E_BUFFER;

	for (i = 0; i + 4 <= n; i += 4)
	{
		for (k = 0; k < 4; k++)
			v[k] = cur_b64_value((unsigned char) in[i + k]);
		out[o++] = (uint8_t) (v[0] << 2 | v[1] >> 4);
		out[o++] = (uint8_t) ((v[1] & 15) << 4 | v[2] >> 2);
		out[o++] = (uint8_t) ((v[2] & 3) << 6 | v[3]);
	}
	if (rem == 2)
	{
		v[0] = cur_b64_value((unsigned char) in[i]);
		v[1] = cur_b64_value((unsigned char) in[i + 1]);
		if (v[1] & 15)
			return PULSE_CURSOR_E_ENCODING; /* non-canonical trailing bits */
		out[o++] = (uint8_t) (v[0] << 2 | v[1] >> 4);
	}
	else if (rem == 3)
	{
		v[0] = cur_b64_value((unsigned char) in[i]);
		v[1] = cur_b64_value((unsigned char) in[i + 1]);
		v[2] = cur_b64_value((unsigned char) in[i + 2]);
		if (v[2] & 3)
			return PULSE_CURSOR_E_ENCODING;
		out[o++] = (uint8_t) (v[0] << 2 | v[1] >> 4);
		out[o++] = (uint8_t) ((v[1] & 15) << 4 | v[2] >> 2);
	}
	*outlen = o;
	return PULSE_CURSOR_OK;
}

/* ---------------------------------------------------------------------
 * Crypto
 * --------------------------------------------------------------------- */

static pulse_cursor_status_t
cur_hmac(const uint8_t *secret, size_t secret_len, const uint8_t *data,
		 size_t len, uint8_t mac[PULSE_CURSOR_MAC_LEN])
{
	size_t		maclen = 0;

	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, secret_len,
				  data, len, mac, PULSE_CURSOR_MAC_LEN, &maclen) == NULL ||
		maclen != PULSE_CURSOR_MAC_LEN)
		return PULSE_CURSOR_E_CRYPTO;
	return PULSE_CURSOR_OK;
}

static void
cur_put_be64(uint8_t out[8], uint64_t v)
{
	int			i;

	for (i = 7; i >= 0; i--)
	{
		out[i] = (uint8_t) (v & 0xff);
		v >>= 8;
	}
}

pulse_cursor_status_t
pulse_cursor_bind(const char *const *parts, size_t nparts,
				  uint8_t out[PULSE_CURSOR_BINDING_LEN])
{
	EVP_MD_CTX *ctx;
	uint8_t		frame[9];
	uint8_t		digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	size_t		i;
	int			ok;

	if (out == NULL || (parts == NULL && nparts > 0))
		return PULSE_CURSOR_E_ARGUMENT;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return PULSE_CURSOR_E_CRYPTO;

	cur_put_be64(frame, (uint64_t) nparts);
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		EVP_DigestUpdate(ctx, cur_binding_label, sizeof(cur_binding_label)) == 1 &&
		EVP_DigestUpdate(ctx, frame, 8) == 1;
	for (i = 0; ok && i < nparts; i++)
	{
		if (parts[i] == NULL)
		{
			frame[0] = 0;
			ok = EVP_DigestUpdate(ctx, frame, 1) == 1;
		}
		else
		{
			size_t		len = strlen(parts[i]);

			frame[0] = 1;
			cur_put_be64(frame + 1, (uint64_t) len);
			ok = EVP_DigestUpdate(ctx, frame, 9) == 1 &&
				EVP_DigestUpdate(ctx, parts[i], len) == 1;
		}
	}
	ok = ok && EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 &&
		dlen >= PULSE_CURSOR_BINDING_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return PULSE_CURSOR_E_CRYPTO;
	memcpy(out, digest, PULSE_CURSOR_BINDING_LEN);
	return PULSE_CURSOR_OK;
}

/* ---------------------------------------------------------------------
 * Payload
 * --------------------------------------------------------------------- */

pulse_cursor_status_t
pulse_cursor_payload_build(const pulse_cursor_fields_t *fields,
						   uint8_t *out, size_t cap, size_t *outlen)
{
	size_t		need = PULSE_CURSOR_HEADER_LEN;
	size_t		pos;
	size_t		i;

	if (fields == NULL || out == NULL || outlen == NULL)
		return PULSE_CURSOR_E_ARGUMENT;
	if (fields->nkeys > PULSE_CURSOR_MAX_KEYS)
		return PULSE_CURSOR_E_TOO_MANY_KEYS;

	/* Size first, with every value checked; need never overflows. */
	for (i = 0; i < fields->nkeys; i++)
	{
		const pulse_cursor_value_t *v = &fields->keys[i];

		need += 1;
		if (v->isnull)
			continue;
		if (v->data == NULL && v->len > 0)
			return PULSE_CURSOR_E_ARGUMENT;
		if (v->len > PULSE_CURSOR_MAX_PAYLOAD)
			return PULSE_CURSOR_E_TOO_LONG;
		need += (v->len < 0x80 ? 1 : 2) + v->len;
		if (need > PULSE_CURSOR_MAX_PAYLOAD)
			return PULSE_CURSOR_E_TOO_LONG;
	}
	if (need > PULSE_CURSOR_MAX_PAYLOAD)
		return PULSE_CURSOR_E_TOO_LONG;
	if (need > cap)
		return PULSE_CURSOR_E_BUFFER;

	out[0] = PULSE_CURSOR_VERSION;
	out[1] = fields->backward ? PULSE_CURSOR_FLAG_BACKWARD : 0;
	memcpy(out + 2, fields->binding, PULSE_CURSOR_BINDING_LEN);
	out[2 + PULSE_CURSOR_BINDING_LEN] = (uint8_t) fields->nkeys;
	pos = PULSE_CURSOR_HEADER_LEN;
	for (i = 0; i < fields->nkeys; i++)
	{
		const pulse_cursor_value_t *v = &fields->keys[i];

		if (v->isnull)
		{
			out[pos++] = CUR_TAG_NULL;
			continue;
		}
		out[pos++] = CUR_TAG_VALUE;
		if (v->len < 0x80)
			out[pos++] = (uint8_t) v->len;
		else
		{
			out[pos++] = (uint8_t) (0x80 | (v->len & 0x7f));
			out[pos++] = (uint8_t) (v->len >> 7);
		}
		if (v->len > 0)
			memcpy(out + pos, v->data, v->len);
		pos += v->len;
	}
	*outlen = pos;
	return PULSE_CURSOR_OK;
}

pulse_cursor_status_t
pulse_cursor_payload_parse(const uint8_t *payload, size_t len,
						   const uint8_t binding[PULSE_CURSOR_BINDING_LEN],
						   size_t expected_nkeys, pulse_cursor_fields_t *out)
{
	size_t		pos;
	size_t		nkeys;
	size_t		i;

	if ((payload == NULL && len > 0) || binding == NULL || out == NULL)
		return PULSE_CURSOR_E_ARGUMENT;
	if (expected_nkeys > PULSE_CURSOR_MAX_KEYS)
		return PULSE_CURSOR_E_TOO_MANY_KEYS;

	/* Header, one field at a time so each failure gets its own reason. */
	if (len < 1)
		return PULSE_CURSOR_E_TRUNCATED;
	if (payload[0] != PULSE_CURSOR_VERSION)
		return PULSE_CURSOR_E_VERSION;
	if (len < 2)
		return PULSE_CURSOR_E_TRUNCATED;
	if ((payload[1] & ~PULSE_CURSOR_FLAG_BACKWARD) != 0)
		return PULSE_CURSOR_E_FLAGS;
	if (len < 2 + PULSE_CURSOR_BINDING_LEN)
		return PULSE_CURSOR_E_TRUNCATED;
	if (memcmp(payload + 2, binding, PULSE_CURSOR_BINDING_LEN) != 0)
		return PULSE_CURSOR_E_BINDING;
	if (len < PULSE_CURSOR_HEADER_LEN)
		return PULSE_CURSOR_E_TRUNCATED;
	nkeys = payload[2 + PULSE_CURSOR_BINDING_LEN];
	if (nkeys != expected_nkeys)
		return PULSE_CURSOR_E_NKEYS;

	out->backward = (payload[1] & PULSE_CURSOR_FLAG_BACKWARD) != 0;
	memcpy(out->binding, payload + 2, PULSE_CURSOR_BINDING_LEN);
	out->nkeys = 0;
	pos = PULSE_CURSOR_HEADER_LEN;

	for (i = 0; i < nkeys; i++)
	{
		pulse_cursor_value_t *v = &out->keys[i];
		size_t		vlen;
		uint8_t		b0;
		uint8_t		b1;

		if (pos >= len)
			return PULSE_CURSOR_E_TRUNCATED;
		if (payload[pos] == CUR_TAG_NULL)
		{
			pos++;
			v->isnull = true;
			v->data = NULL;
			v->len = 0;
			continue;
		}
		if (payload[pos] != CUR_TAG_VALUE)
			return PULSE_CURSOR_E_TAG;
		pos++;

		/* Minimal LEB128 of one or two bytes. */
		if (pos >= len)
			return PULSE_CURSOR_E_TRUNCATED;
		b0 = payload[pos++];
		if (b0 < 0x80)
			vlen = b0;
		else
		{
			if (pos >= len)
				return PULSE_CURSOR_E_TRUNCATED;
			b1 = payload[pos++];
			if (b1 == 0 || (b1 & 0x80) != 0)
				return PULSE_CURSOR_E_LENGTH;
			vlen = (size_t) (b0 & 0x7f) | (size_t) b1 << 7;
		}
		if (vlen > len - pos)
			return PULSE_CURSOR_E_TRUNCATED;
		v->isnull = false;
		v->data = (const char *) (payload + pos);
		v->len = vlen;
		pos += vlen;
	}
	if (pos != len)
		return PULSE_CURSOR_E_TRAILING;
	out->nkeys = nkeys;
	return PULSE_CURSOR_OK;
}

/* ---------------------------------------------------------------------
 * Tokens
 * --------------------------------------------------------------------- */

/*
 * Appends the MAC to the payload in raw[0..plen) (raw has room for it) and
 * writes the token.
 */
static pulse_cursor_status_t
cur_seal(const uint8_t *secret, size_t secret_len, uint8_t *raw, size_t plen,
		 char *out, size_t cap, size_t *outlen)
{
	size_t		tlen = cur_b64_encoded_len(plen + PULSE_CURSOR_MAC_LEN);
	pulse_cursor_status_t st;

	if (tlen > PULSE_CURSOR_MAX_TOKEN)
		return PULSE_CURSOR_E_TOO_LONG;
	if (tlen >= cap)
		return PULSE_CURSOR_E_BUFFER;
	st = cur_hmac(secret, secret_len, raw, plen, raw + plen);
	if (st != PULSE_CURSOR_OK)
		return st;
	cur_b64_encode(raw, plen + PULSE_CURSOR_MAC_LEN, out);
	out[tlen] = '\0';
	if (outlen != NULL)
		*outlen = tlen;
	return PULSE_CURSOR_OK;
}

pulse_cursor_status_t
pulse_cursor_token_sign(const uint8_t *secret, size_t secret_len,
						const uint8_t *payload, size_t payload_len,
						char *out, size_t cap, size_t *outlen)
{
	uint8_t		raw[PULSE_CURSOR_MAX_RAW];

	if (secret == NULL || secret_len < PULSE_CURSOR_MIN_SECRET)
		return PULSE_CURSOR_E_SECRET;
	if ((payload == NULL && payload_len > 0) || out == NULL)
		return PULSE_CURSOR_E_ARGUMENT;
	if (payload_len > PULSE_CURSOR_MAX_PAYLOAD)
		return PULSE_CURSOR_E_TOO_LONG;
	if (payload_len > 0)
		memcpy(raw, payload, payload_len);
	return cur_seal(secret, secret_len, raw, payload_len, out, cap, outlen);
}

pulse_cursor_status_t
pulse_cursor_token_encode(const uint8_t *secret, size_t secret_len,
						  const pulse_cursor_fields_t *fields,
						  char *out, size_t cap, size_t *outlen)
{
	uint8_t		raw[PULSE_CURSOR_MAX_RAW];
	size_t		plen = 0;
	pulse_cursor_status_t st;

	if (secret == NULL || secret_len < PULSE_CURSOR_MIN_SECRET)
		return PULSE_CURSOR_E_SECRET;
	if (out == NULL)
		return PULSE_CURSOR_E_ARGUMENT;
	st = pulse_cursor_payload_build(fields, raw, PULSE_CURSOR_MAX_PAYLOAD, &plen);
	if (st != PULSE_CURSOR_OK)
		return st;
	return cur_seal(secret, secret_len, raw, plen, out, cap, outlen);
}

pulse_cursor_status_t
pulse_cursor_token_decode(const uint8_t *secret, size_t secret_len,
						  const char *token, size_t token_len,
						  const uint8_t binding[PULSE_CURSOR_BINDING_LEN],
						  size_t expected_nkeys,
						  uint8_t *buf, size_t cap,
						  pulse_cursor_fields_t *out)
{
	uint8_t		mac[PULSE_CURSOR_MAC_LEN];
	size_t		rawlen = 0;
	size_t		plen;
	pulse_cursor_status_t st;

	if (secret == NULL || secret_len < PULSE_CURSOR_MIN_SECRET)
		return PULSE_CURSOR_E_SECRET;
	if ((token == NULL && token_len > 0) || binding == NULL ||
		buf == NULL || out == NULL)
		return PULSE_CURSOR_E_ARGUMENT;
	if (expected_nkeys > PULSE_CURSOR_MAX_KEYS)
		return PULSE_CURSOR_E_TOO_MANY_KEYS;

	/* 1. length bounds, before touching the characters */
	if (token_len == 0)
		return PULSE_CURSOR_E_EMPTY;
	if (token_len > PULSE_CURSOR_MAX_TOKEN)
		return PULSE_CURSOR_E_TOO_LONG;

	/* 2. strict base64url */
	st = cur_b64_decode(token, token_len, buf, cap, &rawlen);
	if (st != PULSE_CURSOR_OK)
		return st;
	if (rawlen < PULSE_CURSOR_HEADER_LEN + PULSE_CURSOR_MAC_LEN)
		return PULSE_CURSOR_E_TRUNCATED;
	plen = rawlen - PULSE_CURSOR_MAC_LEN;

	/* 3. signature, in constant time, before any byte is interpreted */
	st = cur_hmac(secret, secret_len, buf, plen, mac);
	if (st != PULSE_CURSOR_OK)
		return st;
	if (CRYPTO_memcmp(mac, buf + plen, PULSE_CURSOR_MAC_LEN) != 0)
		return PULSE_CURSOR_E_SIGNATURE;

	/* 4. strict parse */
	return pulse_cursor_payload_parse(buf, plen, binding, expected_nkeys, out);
}
