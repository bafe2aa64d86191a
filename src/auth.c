/*
 * auth: password hashes (scrypt / PBKDF2-SHA256 through OpenSSL EVP_KDF),
 * the user table with its cache of successful verifications, and the
 * per-client failure throttle.
 */
#include "tailfence/auth.h"
#include "tailfence/text.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SALT_LEN 16
#define KEY_LEN 32
#define MAX_KEY_LEN 64
#define DEFAULT_LN 15
#define MIN_LN 15
#define MAX_LN 22
#define MIN_PBKDF2_ITER 600000UL
#define MAX_PBKDF2_ITER 100000000UL

enum scheme { SCHEME_SCRYPT, SCHEME_PBKDF2 };

struct parsed_hash {
	enum scheme scheme;
	unsigned ln, r, p;
	unsigned long iter;
	uint8_t salt[64];
	size_t salt_len;
	uint8_t key[MAX_KEY_LEN];
	size_t key_len;
};

/* ---- base64 without padding (decoding: text.h) ---- */

/* The hash format's base64 has no padding: '=' is refused. */
static bool b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
	return n > 0 && !memchr(in, '=', n) && text_base64_decode(in, n, out, cap, outlen);
}

static size_t b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
	if (outlen < 4 * ((n + 2) / 3) + 1)
		return 0;
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len > 0 && out[len - 1] == '=')
		out[--len] = '\0';
	return (size_t)len;
}


/* ---- hash strings ---- */

static bool parse_uint(const char **s, unsigned long max, unsigned long *out)
{
	const char *p = *s;
	unsigned long v = 0;
	if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
		return false;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > max)
			return false;
		p++;
	}
	*s = p;
	*out = v;
	return true;
}

static bool parse_hash(const char *h, struct parsed_hash *ph, char *err, size_t errlen)
{
	const char *p;
	unsigned long v;

	memset(ph, 0, sizeof *ph);
	if (!h) {
		snprintf(err, errlen, "is missing");
		return false;
	}
	if (strncmp(h, "$scrypt$", 8) == 0) {
		ph->scheme = SCHEME_SCRYPT;
		p = h + 8;
		if (strncmp(p, "ln=", 3) || (p += 3, !parse_uint(&p, 63, &v)))
			goto bad;
		ph->ln = (unsigned)v;
		if (strncmp(p, ",r=", 3) || (p += 3, !parse_uint(&p, 1024, &v)) || v == 0)
			goto bad;
		ph->r = (unsigned)v;
		if (strncmp(p, ",p=", 3) || (p += 3, !parse_uint(&p, 1024, &v)) || v == 0)
			goto bad;
		ph->p = (unsigned)v;
		if (ph->ln < MIN_LN || ph->ln > MAX_LN) {
			snprintf(err, errlen, "has scrypt ln=%u; expected %u to %u", ph->ln, MIN_LN,
				 MAX_LN);
			return false;
		}
		if (ph->r < 8 || ph->r > 32 || ph->p > 16) {
			snprintf(err, errlen, "has scrypt r=%u,p=%u; expected r 8 to 32, p 1 to 16",
				 ph->r, ph->p);
			return false;
		}
	} else if (strncmp(h, "$pbkdf2-sha256$", 15) == 0) {
		ph->scheme = SCHEME_PBKDF2;
		p = h + 15;
		if (strncmp(p, "i=", 2) || (p += 2, !parse_uint(&p, MAX_PBKDF2_ITER, &v)))
			goto bad;
		ph->iter = v;
		if (ph->iter < MIN_PBKDF2_ITER) {
			snprintf(err, errlen, "has pbkdf2-sha256 i=%lu; expected at least %lu", ph->iter,
				 MIN_PBKDF2_ITER);
			return false;
		}
	} else {
		snprintf(err, errlen,
			 "is not a password hash; expected $scrypt$... or $pbkdf2-sha256$... as printed by `tailfence passwd`");
		return false;
	}
	if (*p != '$')
		goto bad;
	p++;
	const char *d = strchr(p, '$');
	if (!d || !b64_decode(p, (size_t)(d - p), ph->salt, sizeof ph->salt, &ph->salt_len) ||
	    ph->salt_len < 8)
		goto bad;
	p = d + 1;
	if (!b64_decode(p, strlen(p), ph->key, sizeof ph->key, &ph->key_len) || ph->key_len < 16)
		goto bad;
	return true;
bad:
	snprintf(err, errlen,
		 "is malformed; expected $scrypt$ln=15,r=8,p=1$SALT$HASH or $pbkdf2-sha256$i=600000$SALT$HASH");
	return false;
}

static bool derive(const struct parsed_hash *ph, const char *pass, size_t passlen, uint8_t *out,
		   size_t outlen)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *ctx = NULL;
	OSSL_PARAM params[6];
	int n = 0;
	bool ok = false;
	/* OSSL_PARAM wants non-const pointers; nothing is written through them. */
	char *pw = (char *)(uintptr_t)pass;
	static const char empty[1] = "";
	if (passlen == 0)
		pw = (char *)(uintptr_t)empty;

	if (ph->scheme == SCHEME_SCRYPT) {
		uint64_t N = (uint64_t)1 << ph->ln;
		uint32_t r = ph->r, p = ph->p;
		uint64_t maxmem = (uint64_t)128 * r * (N + p + 2) + (1u << 20);
		kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
		params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pw, passlen);
		params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
								(void *)(uintptr_t)ph->salt,
								ph->salt_len);
		params[n++] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &N);
		params[n++] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
		params[n++] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
		params[n] = OSSL_PARAM_construct_end();
		if (kdf && (ctx = EVP_KDF_CTX_new(kdf)) != NULL) {
			OSSL_PARAM mm[2] = {
				OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
				OSSL_PARAM_construct_end(),
			};
			EVP_KDF_CTX_set_params(ctx, mm);
			ok = EVP_KDF_derive(ctx, out, outlen, params) == 1;
		}
	} else {
		unsigned int iter = (unsigned int)ph->iter;
		char digest[] = "SHA256";
		kdf = EVP_KDF_fetch(NULL, "PBKDF2", NULL);
		params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, pw, passlen);
		params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
								(void *)(uintptr_t)ph->salt,
								ph->salt_len);
		params[n++] = OSSL_PARAM_construct_uint(OSSL_KDF_PARAM_ITER, &iter);
		params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
		params[n] = OSSL_PARAM_construct_end();
		if (kdf && (ctx = EVP_KDF_CTX_new(kdf)) != NULL)
			ok = EVP_KDF_derive(ctx, out, outlen, params) == 1;
	}
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok;
}

bool auth_hash_password(const char *pass, size_t passlen, char *out, size_t outlen)
{
	struct parsed_hash ph;
	char salt64[64], key64[64];

	memset(&ph, 0, sizeof ph);
	ph.scheme = SCHEME_SCRYPT;
	ph.ln = DEFAULT_LN;
	ph.r = 8;
	ph.p = 1;
	ph.salt_len = SALT_LEN;
	ph.key_len = KEY_LEN;
	if (RAND_bytes(ph.salt, SALT_LEN) != 1)
		return false;
	if (!derive(&ph, pass, passlen, ph.key, ph.key_len))
		return false;
	b64_encode(ph.salt, ph.salt_len, salt64, sizeof salt64);
	b64_encode(ph.key, ph.key_len, key64, sizeof key64);
	OPENSSL_cleanse(ph.key, sizeof ph.key);
	int n = snprintf(out, outlen, "$scrypt$ln=%u,r=%u,p=%u$%s$%s", ph.ln, ph.r, ph.p, salt64,
			 key64);
	return n > 0 && (size_t)n < outlen;
}

bool auth_hash_check(const char *hash, char *err, size_t errlen)
{
	struct parsed_hash ph;
	return parse_hash(hash, &ph, err, errlen);
}

static bool verify_parsed(const struct parsed_hash *ph, const char *pass, size_t passlen)
{
	uint8_t k[MAX_KEY_LEN];
	bool ok = derive(ph, pass, passlen, k, ph->key_len) &&
		  CRYPTO_memcmp(k, ph->key, ph->key_len) == 0;
	OPENSSL_cleanse(k, sizeof k);
	return ok;
}

bool auth_hash_verify(const char *hash, const char *pass, size_t passlen)
{
	struct parsed_hash ph;
	char err[200];
	if (!parse_hash(hash, &ph, err, sizeof err))
		return false;
	return verify_parsed(&ph, pass, passlen);
}

/* ---- users and the verification cache ---- */

#define CACHE_SLOTS 64

struct auth_user {
	char *name;
	struct parsed_hash hash;
};

struct cache_slot {
	bool used;
	uint8_t mac[32];
	uint64_t stamp;
};

struct auth_users {
	struct auth_user *v;
	size_t n, cap;
	struct parsed_hash dummy;	/* for unknown users */
	uint8_t key[32];
	pthread_mutex_t lock;
	struct cache_slot cache[CACHE_SLOTS];
	uint64_t clock;
};

struct auth_users *auth_users_new(void)
{
	struct auth_users *u = calloc(1, sizeof *u);
	if (!u)
		return NULL;
	if (RAND_bytes(u->key, sizeof u->key) != 1) {
		free(u);
		return NULL;
	}
	u->dummy.scheme = SCHEME_SCRYPT;
	u->dummy.ln = DEFAULT_LN;
	u->dummy.r = 8;
	u->dummy.p = 1;
	u->dummy.salt_len = SALT_LEN;
	u->dummy.key_len = KEY_LEN;
	RAND_bytes(u->dummy.salt, SALT_LEN);
	RAND_bytes(u->dummy.key, KEY_LEN);
	pthread_mutex_init(&u->lock, NULL);
	return u;
}

void auth_users_free(struct auth_users *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].name);
		OPENSSL_cleanse(&u->v[i].hash, sizeof u->v[i].hash);
	}
	free(u->v);
	pthread_mutex_destroy(&u->lock);
	OPENSSL_cleanse(u, sizeof *u);
	free(u);
}

static bool valid_user_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f || c == ':' || c == '*')
			return false;
	}
	return true;
}

bool auth_users_add(struct auth_users *u, const char *name, const char *hash, char *err,
		    size_t errlen)
{
	if (!name || !valid_user_name(name)) {
		snprintf(err, errlen,
			 "user name must be 1 to 255 bytes without spaces, control characters, \":\" or \"*\"");
		return false;
	}
	if (auth_users_has(u, name)) {
		snprintf(err, errlen, "user \"%s\" is defined twice", name);
		return false;
	}
	struct parsed_hash ph;
	if (!parse_hash(hash, &ph, err, errlen))
		return false;
	if (u->n == u->cap) {
		size_t nc = u->cap ? u->cap * 2 : 4;
		struct auth_user *v = realloc(u->v, nc * sizeof *v);
		if (!v)
			return false;
		u->v = v;
		u->cap = nc;
	}
	u->v[u->n].name = strdup(name);
	if (!u->v[u->n].name)
		return false;
	u->v[u->n].hash = ph;
	u->n++;
	return true;
}

bool auth_users_has(const struct auth_users *u, const char *name)
{
	for (size_t i = 0; u && i < u->n; i++)
		if (strcmp(u->v[i].name, name) == 0)
			return true;
	return false;
}

size_t auth_users_count(const struct auth_users *u)
{
	return u ? u->n : 0;
}

const char *auth_users_name(const struct auth_users *u, size_t i)
{
	return i < u->n ? u->v[i].name : NULL;
}

static bool cache_mac(const struct auth_users *u, const char *user, const char *pass,
		      uint8_t mac[32])
{
	unsigned int len = 0;
	size_t ul = strlen(user), pl = strlen(pass);
	size_t n = ul + 1 + pl;
	uint8_t *buf = malloc(n);
	if (!buf)
		return false;
	memcpy(buf, user, ul);
	buf[ul] = 0;
	memcpy(buf + ul + 1, pass, pl);
	bool ok = HMAC(EVP_sha256(), u->key, sizeof u->key, buf, n, mac, &len) != NULL &&
		  len == 32;
	OPENSSL_cleanse(buf, n);
	free(buf);
	return ok;
}

static bool cache_lookup(struct auth_users *u, const uint8_t mac[32])
{
	bool hit = false;
	pthread_mutex_lock(&u->lock);
	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (u->cache[i].used && CRYPTO_memcmp(u->cache[i].mac, mac, 32) == 0) {
			u->cache[i].stamp = ++u->clock;
			hit = true;
		}
	pthread_mutex_unlock(&u->lock);
	return hit;
}

bool auth_users_verify_cached(struct auth_users *u, const char *user, const char *pass)
{
	uint8_t mac[32];
	bool hit = user && pass && cache_mac(u, user, pass, mac) && cache_lookup(u, mac);
	OPENSSL_cleanse(mac, sizeof mac);
	return hit;
}

bool auth_users_verify(struct auth_users *u, const char *user, const char *pass)
{
	uint8_t mac[32];
	bool have_mac = user && pass && cache_mac(u, user, pass, mac);

	if (have_mac && cache_lookup(u, mac))
		return true;
	const struct parsed_hash *ph = &u->dummy;
	bool known = false;
	for (size_t i = 0; user && i < u->n; i++)
		if (strcmp(u->v[i].name, user) == 0) {
			ph = &u->v[i].hash;
			known = true;
		}
	bool ok = verify_parsed(ph, pass ? pass : "", pass ? strlen(pass) : 0) && known;
	if (ok && have_mac) {
		pthread_mutex_lock(&u->lock);
		size_t victim = 0;
		for (size_t i = 0; i < CACHE_SLOTS; i++) {
			if (!u->cache[i].used) {
				victim = i;
				break;
			}
			if (u->cache[i].stamp < u->cache[victim].stamp)
				victim = i;
		}
		u->cache[victim].used = true;
		memcpy(u->cache[victim].mac, mac, 32);
		u->cache[victim].stamp = ++u->clock;
		pthread_mutex_unlock(&u->lock);
	}
	OPENSSL_cleanse(mac, sizeof mac);
	return ok;
}

/* ---- credentials in transit ---- */

bool auth_creds_set(struct auth_creds *c, const char *user, const char *pass)
{
	size_t ul = user ? strlen(user) : sizeof c->user;
	size_t pl = pass ? strlen(pass) : sizeof c->pass;
	if (ul >= sizeof c->user || pl >= sizeof c->pass) {
		auth_creds_wipe(c);
		return false;
	}
	memcpy(c->user, user, ul + 1);
	memcpy(c->pass, pass, pl + 1);
	return true;
}

void auth_creds_wipe(struct auth_creds *c)
{
	OPENSSL_cleanse(c->user, sizeof c->user);
	OPENSSL_cleanse(c->pass, sizeof c->pass);
}

/* ---- failure throttle ---- */

void auth_client_prefix(const struct cidr_addr *a, struct cidr_addr *out)
{
	memset(out, 0, sizeof *out);
	out->family = a->family;
	if (a->family == AF_INET6) {
		struct cidr_addr n = *a;
		cidr_addr_normalize(&n);
		if (n.family == AF_INET) {
			memcpy(out, &n, sizeof n);
			memset(out->b + 4, 0, sizeof out->b - 4);
			return;
		}
		memcpy(out->b, a->b, 8);
	} else if (a->family == AF_INET) {
		memcpy(out->b, a->b, 4);
	}
}

static bool throttle_live(const struct auth_throttle_entry *e, uint64_t now_ms)
{
	return now_ms < e->last_ms || now_ms - e->last_ms < AUTH_THROTTLE_WINDOW_MS;
}

static size_t throttle_find(const struct auth_throttle *t, const struct cidr_addr *key)
{
	for (size_t i = 0; i < t->n; i++)
		if (cidr_addr_equal(&t->e[i].key, key))
			return i;
	return (size_t)-1;
}

void auth_throttle_init(struct auth_throttle *t)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
}

void auth_throttle_destroy(struct auth_throttle *t)
{
	pthread_mutex_destroy(&t->lock);
}

static unsigned throttle_failures_locked(const struct auth_throttle *t,
					 const struct cidr_addr *a, uint64_t now_ms)
{
	struct cidr_addr key;
	auth_client_prefix(a, &key);
	size_t i = throttle_find(t, &key);
	if (i == (size_t)-1 || !throttle_live(&t->e[i], now_ms))
		return 0;
	return t->e[i].failures;
}

unsigned auth_throttle_failures(struct auth_throttle *t, const struct cidr_addr *a,
				uint64_t now_ms)
{
	pthread_mutex_lock(&t->lock);
	unsigned f = throttle_failures_locked(t, a, now_ms);
	pthread_mutex_unlock(&t->lock);
	return f;
}

unsigned auth_throttle_delay_ms(struct auth_throttle *t, const struct cidr_addr *a,
				uint64_t now_ms)
{
	unsigned f = auth_throttle_failures(t, a, now_ms);
	if (f == 0)
		return 0;
	if (f > 6)
		return AUTH_THROTTLE_MAX_DELAY_MS;
	unsigned d = AUTH_THROTTLE_BASE_DELAY_MS << (f - 1);
	return d > AUTH_THROTTLE_MAX_DELAY_MS ? AUTH_THROTTLE_MAX_DELAY_MS : d;
}

static void throttle_failure_locked(struct auth_throttle *t, const struct cidr_addr *a,
				    uint64_t now_ms)
{
	struct cidr_addr key;
	auth_client_prefix(a, &key);
	size_t i = throttle_find(t, &key);
	if (i != (size_t)-1) {
		struct auth_throttle_entry *e = &t->e[i];
		if (!throttle_live(e, now_ms))
			e->failures = 0;
		if (e->failures < 1000)
			e->failures++;
		e->last_ms = now_ms;
		return;
	}
	if (t->n < AUTH_THROTTLE_SLOTS) {
		i = t->n++;
	} else {
		/* Full: the record that expires first gives way. Every record
		 * lives the same window from its last failure, so that is the
		 * one with the oldest last failure (expired ones first). */
		i = 0;
		for (size_t j = 1; j < t->n; j++)
			if (t->e[j].last_ms < t->e[i].last_ms)
				i = j;
	}
	t->e[i].key = key;
	t->e[i].failures = 1;
	t->e[i].last_ms = now_ms;
}

void auth_throttle_failure(struct auth_throttle *t, const struct cidr_addr *a, uint64_t now_ms)
{
	pthread_mutex_lock(&t->lock);
	throttle_failure_locked(t, a, now_ms);
	pthread_mutex_unlock(&t->lock);
}

void auth_throttle_success(struct auth_throttle *t, const struct cidr_addr *a)
{
	struct cidr_addr key;
	auth_client_prefix(a, &key);
	pthread_mutex_lock(&t->lock);
	size_t i = throttle_find(t, &key);
	if (i != (size_t)-1) {
		t->e[i] = t->e[--t->n];
		memset(&t->e[t->n], 0, sizeof t->e[t->n]);
	}
	pthread_mutex_unlock(&t->lock);
}
