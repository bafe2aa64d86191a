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

#include <pthread.h>
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

/* Credentials on their way to a check off the event loop: a fixed-size
 * copy that auth_creds_wipe() clears. */
struct auth_creds {
	char user[256];
	char pass[256];
};

/* Copies user and pass; false (and nothing kept) when either is NULL or
 * longer than 255 bytes. */
bool auth_creds_set(struct auth_creds *c, const char *user, const char *pass);
/* Overwrites both with zeros (OPENSSL_cleanse: not optimised away). */
void auth_creds_wipe(struct auth_creds *c);

/* The key a client's logins are counted under: the address itself for
 * IPv4 (/32), its /64 for IPv6 (one host picks any address of its /64, so
 * a finer key would let it start afresh with every address). IPv4-mapped
 * IPv6 is IPv4. */
void auth_client_prefix(const struct cidr_addr *a, struct cidr_addr *out);

/* Per-client failure throttle. A failed login is answered only after a
 * delay that doubles with the client's recent failures: 250 ms, 500 ms, ...
 * up to 8 s; a failure is remembered for AUTH_THROTTLE_WINDOW_MS after the
 * client's last one, and a successful login forgets them.
 *
 * Clients are keyed by auth_client_prefix() and found by exact key, never
 * by a hash, so one client can never reset or share another's record. The
 * table is bounded: when it is full, a new client takes the place of the
 * record that expires first (an expired one if there is any), never a
 * record that expires later. Callers pass the time (monotonic, ms).
 * Thread-safe: every event loop shares one, so a client that spreads its
 * attempts over the loops meets the same delays. */
#define AUTH_THROTTLE_SLOTS 1024
#define AUTH_THROTTLE_WINDOW_MS (15u * 60u * 1000u)
#define AUTH_THROTTLE_BASE_DELAY_MS 250u
#define AUTH_THROTTLE_MAX_DELAY_MS 8000u

struct auth_throttle_entry {
	struct cidr_addr key;		/* auth_client_prefix() of the client */
	uint64_t last_ms;		/* its last failure */
	unsigned failures;		/* within the window */
};

struct auth_throttle {
	pthread_mutex_t lock;		/* every loop shares one throttle */
	struct auth_throttle_entry e[AUTH_THROTTLE_SLOTS];
	size_t n;			/* e[0..n) are in use */
};

void auth_throttle_init(struct auth_throttle *t);
void auth_throttle_destroy(struct auth_throttle *t);
/* How long to wait before answering a failed login from a, counting that
 * failure: 0 with no recent failure. */
unsigned auth_throttle_delay_ms(struct auth_throttle *t, const struct cidr_addr *a,
				uint64_t now_ms);
void auth_throttle_failure(struct auth_throttle *t, const struct cidr_addr *a, uint64_t now_ms);
void auth_throttle_success(struct auth_throttle *t, const struct cidr_addr *a);
/* Failures remembered for a's client prefix (0 when none or expired). */
unsigned auth_throttle_failures(struct auth_throttle *t, const struct cidr_addr *a,
				uint64_t now_ms);

#endif
