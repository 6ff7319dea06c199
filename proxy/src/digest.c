/*
 * digest.c: SHA-256 fetched once per process (digest.h).
 */
#include <pthread.h>
#include "digest.h"

static EVP_MD *digest_sha256;
static pthread_once_t digest_once = PTHREAD_ONCE_INIT;

static void digest_fetch(void)
{
    digest_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *pulse_digest_sha256(void)
{
    pthread_once(&digest_once, digest_fetch);
    return digest_sha256;
}

int pulse_digest(const void *p, size_t len, unsigned char out[32])
{
    const EVP_MD *md = pulse_digest_sha256();
    unsigned int outlen = 0;
    if (md == NULL || EVP_Digest(p, len, out, &outlen, md, NULL) != 1 || outlen != 32)
        return -1;
    return 0;
}
