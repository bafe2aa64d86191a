/*
 * auth: password hashes, user tables with a verification cache, and the
 * per-client failure throttle.
 *
 * Hash strings are self-describing:
 *   $scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>
 *   $pbkdf2-sha256$i=600000$<salt b64>$<hash b64>
 * (standard base64 without padding). Both are computed with OpenSSL's
 * EVP_KDF and compared with CRYPTO_memcmp. Nothing here logs a password.
 */
#ifndef TAILFENCE_AUTH_H
#define TAILFENCE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

/* Longest hash string, NUL included. */
#define AUTH_HASH_STRLEN 192

/* Hashes pass with scrypt (ln=15, r=8, p=1) and a random 16-byte salt.
 * Returns false when the KDF fails or out is too small. */
bool auth_hash_password(const char *pass, size_t passlen, char *out, size_t outlen);

/* Checks that hash is a well-formed string of a supported scheme with
 * parameters at least as strong as the defaults; writes why not into err. */
bool auth_hash_check(const char *hash, char *err, size_t errlen);

/* Runs the KDF and compares in constant time. False for a malformed hash. */
bool auth_hash_verify(const char *hash, const char *pass, size_t passlen);

/* A set of users, their hashes and a cache of successful verifications
 * (HMAC-SHA256 of user || 0 || password under a random per-process key),
 * so the KDF runs once per (user, password) rather than per connection.
 * auth_users_verify is thread-safe. */
struct auth_users;

struct auth_users *auth_users_new(void);
void auth_users_free(struct auth_users *u);
/* Adds a user; err names the problem with the hash (not the key path). */
bool auth_users_add(struct auth_users *u, const char *name, const char *hash,
		    char *err, size_t errlen);
bool auth_users_has(const struct auth_users *u, const char *name);
size_t auth_users_count(const struct auth_users *u);
const char *auth_users_name(const struct auth_users *u, size_t i);
/* True when pass is the user's password. An unknown user runs the KDF over
 * a dummy hash, so it costs the same as a wrong password. */
bool auth_users_verify(struct auth_users *u, const char *user, const char *pass);

/* True only when these credentials verified before (the cache): costs one
 * HMAC, never the KDF, so the event loop may call it. False means "run
 * auth_users_verify() off the loop", not "wrong". */
bool auth_users_verify_cached(struct auth_users *u, const char *user, const char *pass);

/* Per-client-address failure throttle: a small fixed table; callers pass
 * the current time (monotonic, ms). Not thread-safe; one per event loop. */
#define AUTH_THROTTLE_SLOTS 256
#define AUTH_THROTTLE_WINDOW_MS (15u * 60u * 1000u)	/* failures older than this are forgotten */
#define AUTH_THROTTLE_MAX_DELAY_MS 8000u

struct auth_throttle_slot {
	struct cidr_addr addr;
	uint64_t last_ms;
	unsigned failures;
};

struct auth_throttle {
	struct auth_throttle_slot slots[AUTH_THROTTLE_SLOTS];
};

void auth_throttle_init(struct auth_throttle *t);
/* How long to wait before answering the next attempt from a: 0 with no
 * recent failure, then 250 ms doubling per failure up to 8 s. */
unsigned auth_throttle_delay_ms(const struct auth_throttle *t, const struct cidr_addr *a,
				uint64_t now_ms);
void auth_throttle_failure(struct auth_throttle *t, const struct cidr_addr *a, uint64_t now_ms);
void auth_throttle_success(struct auth_throttle *t, const struct cidr_addr *a);

#endif
