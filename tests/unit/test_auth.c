/*
 * test_auth: table-driven tests of the password hashes (hash, check,
 * verify; scrypt and PBKDF2 vectors computed with Python's hashlib, an
 * independent implementation), the user table with its verification cache,
 * the credentials copy handed to the worker (wiped), and the per-client
 * failure throttle (delays, window, reset, client prefixes, collisions,
 * eviction order).
 * The KDF is deliberately slow (scrypt ln=15), so the verify tables are
 * kept short.
 */
#include "tailfence/auth.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

/* salt "tailfence-salt-1", password "correct horse" (hashlib.scrypt /
 * hashlib.pbkdf2_hmac). */
#define SALT64 "dGFpbGZlbmNlLXNhbHQtMQ"
#define V_SCRYPT "$scrypt$ln=15,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE"
#define V_PBKDF2 "$pbkdf2-sha256$i=600000$" SALT64 "$msV+ia6CqpapvNfuvpCnmfuaEy/c+sK3GKUuejCD2UE"
#define V_SCRYPT_EMPTY "$scrypt$ln=15,r=8,p=1$" SALT64 "$9qwU3FPj/zP/Ewg1f2mWNi22O2F3l1bxBrT9EoBlwLE"
#define V_SCRYPT_R16 "$scrypt$ln=15,r=16,p=2$" SALT64 "$xPAjGtNQb8JIhYIA7BvFuTVTUmm7thLE/ogHGr5n/3CRh5Rjb1TU9KUmiHp5k+uFqUBFpp3DRon8Z1rg85FRHg"

/* ---- auth_hash_verify against known vectors ---- */

struct verify_case {
	const char *hash;
	const char *pass;
	size_t len;		/* bytes of pass to use */
	bool want;
};

static const struct verify_case verify_cases[] = {
	{ V_SCRYPT, "correct horse", 13, true },
	{ V_SCRYPT, "correct horse!", 14, false },	/* one byte more */
	{ V_SCRYPT, "correct hors", 12, false },	/* one byte less */
	{ V_SCRYPT, "Correct horse", 13, false },
	{ V_SCRYPT, "", 0, false },
	{ V_PBKDF2, "correct horse", 13, true },
	{ V_PBKDF2, "correct horsf", 13, false },
	{ V_SCRYPT_EMPTY, "", 0, true },		/* the KDF of nothing */
	{ V_SCRYPT_EMPTY, "x", 1, false },
	{ V_SCRYPT_R16, "correct horse", 13, true },	/* r, p and a 64-byte key */
	/* a password with a NUL inside: the length counts, not strlen */
	{ V_SCRYPT, "correct horse\0tail", 18, false },
	/* the salt is part of the hash: the same key under another salt */
	{ "$scrypt$ln=15,r=8,p=1$dGFpbGZlbmNlLXNhbHQtMg$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE",
	  "correct horse", 13, false },
	/* one bit of the stored key's first byte flipped ('3' -> '2') */
	{ "$scrypt$ln=15,r=8,p=1$" SALT64 "$2dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE",
	  "correct horse", 13, false },
	/* malformed hashes never verify */
	{ "", "correct horse", 13, false },
	{ "$scrypt$ln=15,r=8,p=1$" SALT64, "correct horse", 13, false },
};

static void test_verify_vectors(void)
{
	for (size_t i = 0; i < sizeof verify_cases / sizeof verify_cases[0]; i++) {
		const struct verify_case *c = &verify_cases[i];
		bool got = auth_hash_verify(c->hash, c->pass, c->len);
		CHECK(got == c->want, "verify case %zu (%.40s..., %zu-byte password): %d, want %d", i,
		      c->hash, c->len, got, c->want);
	}
}

/* ---- auth_hash_check: well-formedness and minimum strength ---- */

struct check_case {
	const char *hash;
	bool ok;
	const char *err_has;	/* substring of the error when !ok */
};

static const struct check_case check_cases[] = {
	{ V_SCRYPT, true, NULL },
	{ V_PBKDF2, true, NULL },
	{ V_SCRYPT_R16, true, NULL },
	{ "$scrypt$ln=22,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", true, NULL },
	{ "$pbkdf2-sha256$i=1000000$" SALT64 "$msV+ia6CqpapvNfuvpCnmfuaEy/c+sK3GKUuejCD2UE", true,
	  NULL },
	/* weaker than the defaults */
	{ "$scrypt$ln=14,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "ln=14" },
	{ "$scrypt$ln=10,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "ln=10" },
	{ "$scrypt$ln=15,r=4,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "r=4" },
	{ "$pbkdf2-sha256$i=1000$" SALT64 "$msV+ia6CqpapvNfuvpCnmfuaEy/c+sK3GKUuejCD2UE", false,
	  "i=1000" },
	{ "$pbkdf2-sha256$i=599999$" SALT64 "$msV+ia6CqpapvNfuvpCnmfuaEy/c+sK3GKUuejCD2UE", false,
	  "600000" },
	/* beyond what the daemon would spend on one login */
	{ "$scrypt$ln=23,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "ln=23" },
	{ "$scrypt$ln=15,r=8,p=17$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "p=17" },
	/* other schemes and plain text */
	{ "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234", false, "tailfence passwd" },
	{ "correct horse", false, "tailfence passwd" },
	{ "", false, "tailfence passwd" },
	/* malformed */
	{ "$scrypt$ln=15,r=8$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "malformed" },
	{ "$scrypt$ln=015,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "malformed" },
	{ "$scrypt$ln=15,r=8,p=0$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "malformed" },
	{ "$scrypt$ln=15,r=8,p=1$" SALT64, false, "malformed" },
	{ "$scrypt$ln=15,r=8,p=1$" SALT64 "$", false, "malformed" },
	{ "$scrypt$ln=15,r=8,p=1$$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false, "malformed" },
	{ "$scrypt$ln=15,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4x!", false,
	  "malformed" },
	{ "$scrypt$ln=15,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE=", false,
	  "malformed" },
	{ "$scrypt$ln=15,r=8,p=1$c2FsdA$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "malformed" },	/* 4-byte salt */
	{ "$scrypt$ln=15,r=8,p=1$" SALT64 "$c2hvcnQ", false, "malformed" },	/* 5-byte key */
	{ "$scrypt$ln=15,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE$x", false,
	  "malformed" },
	{ "$scrypt$ln=15,r=8,p=1 $" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE", false,
	  "malformed" },
	{ "$scrypt$ln=99999999999999999999,r=8,p=1$" SALT64 "$3dQt", false, "malformed" },
	{ "$pbkdf2-sha256$i=$" SALT64 "$msV+ia6CqpapvNfuvpCnmfuaEy/c+sK3GKUuejCD2UE", false,
	  "malformed" },
};

static void test_hash_check(void)
{
	for (size_t i = 0; i < sizeof check_cases / sizeof check_cases[0]; i++) {
		const struct check_case *c = &check_cases[i];
		char err[256] = "";
		bool ok = auth_hash_check(c->hash, err, sizeof err);
		CHECK(ok == c->ok, "check \"%s\": %d, want %d (%s)", c->hash, ok, c->ok, err);
		if (!ok && !c->ok) {
			CHECK(strstr(err, c->err_has) != NULL, "check \"%s\": error \"%s\" lacks \"%s\"",
			      c->hash, err, c->err_has);
			CHECK(strstr(err, "correct horse") == NULL, "error repeats the input: %s", err);
		}
	}
	char err[64] = "";
	CHECK(!auth_hash_check(NULL, err, sizeof err) && err[0], "NULL hash: \"%s\"", err);
	/* a tiny error buffer is truncated, not overrun */
	char small[8];
	memset(small, 'x', sizeof small);
	CHECK(!auth_hash_check("nope", small, sizeof small) && strlen(small) < sizeof small,
	      "error buffer of 8 bytes");
}

/* ---- auth_hash_password: fresh hashes round-trip ---- */

static void test_hash_password(void)
{
	char h1[AUTH_HASH_STRLEN], h2[AUTH_HASH_STRLEN], err[256];
	static const char pw[] = "s3cret pass";

	CHECK(auth_hash_password(pw, strlen(pw), h1, sizeof h1), "hash_password");
	CHECK(strncmp(h1, "$scrypt$ln=15,r=8,p=1$", 22) == 0, "hash text %s", h1);
	CHECK(strlen(h1) < AUTH_HASH_STRLEN, "hash length %zu", strlen(h1));
	CHECK(strstr(h1, pw) == NULL, "hash contains the password");
	CHECK(auth_hash_check(h1, err, sizeof err), "own hash fails check: %s", err);
	CHECK(auth_hash_verify(h1, pw, strlen(pw)), "own hash does not verify");
	CHECK(!auth_hash_verify(h1, "s3cret pasS", 11), "own hash verifies a wrong password");

	/* a random salt: the same password hashes differently, both verify */
	CHECK(auth_hash_password(pw, strlen(pw), h2, sizeof h2), "hash_password again");
	CHECK(strcmp(h1, h2) != 0, "two hashes of one password are equal: %s", h1);
	CHECK(auth_hash_verify(h2, pw, strlen(pw)), "second hash does not verify");

	/* an output buffer that is too small is refused, not overrun */
	char tiny[40];
	memset(tiny, 0, sizeof tiny);
	CHECK(!auth_hash_password(pw, strlen(pw), tiny, sizeof tiny), "40-byte output accepted");
}

/* ---- auth_users ---- */

struct add_case {
	const char *name;
	const char *hash;
	bool ok;
	const char *err_has;
};

static const struct add_case add_cases[] = {
	{ "alice", V_SCRYPT, true, NULL },
	{ "bob", V_PBKDF2, true, NULL },
	{ "alice", V_PBKDF2, false, "twice" },
	{ "", V_SCRYPT, false, "user name" },
	{ "with space", V_SCRYPT, false, "user name" },
	{ "a:b", V_SCRYPT, false, "user name" },
	{ "*", V_SCRYPT, false, "user name" },
	{ "tab\tname", V_SCRYPT, false, "user name" },
	{ "carol", "plaintext", false, "tailfence passwd" },
	{ "carol", "$scrypt$ln=10,r=8,p=1$" SALT64 "$3dQtjS4R+s76gWpaLy9tapH4Mbbl6Ru6+HA+Cyrw4xE",
	  false, "ln=10" },
	{ "d\xc3\xa9sir\xc3\xa9", V_SCRYPT, true, NULL },	/* UTF-8 names are fine */
};

struct login_case {
	const char *user;
	const char *pass;
	bool want;
};

static const struct login_case login_cases[] = {
	{ "alice", "correct horse", true },
	{ "alice", "correct horse", true },	/* again: from the cache */
	{ "bob", "correct horse", true },
	{ "alice", "wrong", false },
	{ "alice", "correct horse ", false },
	{ "Alice", "correct horse", false },	/* names are case-sensitive */
	{ "mallory", "correct horse", false },	/* unknown user */
	{ "carol", "plaintext", false },	/* refused at add time */
	{ "alice", "", false },
	{ "", "correct horse", false },
	{ NULL, "correct horse", false },
	{ "alice", NULL, false },
	{ "alice", "correct horse", true },	/* failures do not poison the cache */
};

static void test_users(void)
{
	struct auth_users *u = auth_users_new();
	CHECK(u != NULL, "auth_users_new");
	if (!u)
		return;
	CHECK(auth_users_count(u) == 0, "empty table count %zu", auth_users_count(u));
	size_t want_n = 0;
	for (size_t i = 0; i < sizeof add_cases / sizeof add_cases[0]; i++) {
		const struct add_case *c = &add_cases[i];
		char err[256] = "";
		bool ok = auth_users_add(u, c->name, c->hash, err, sizeof err);
		CHECK(ok == c->ok, "add \"%s\": %d, want %d (%s)", c->name, ok, c->ok, err);
		if (ok)
			want_n++;
		if (!ok && !c->ok)
			CHECK(strstr(err, c->err_has) != NULL, "add \"%s\": error \"%s\" lacks \"%s\"",
			      c->name, err, c->err_has);
	}
	CHECK(auth_users_count(u) == want_n, "count %zu, want %zu", auth_users_count(u), want_n);
	CHECK(auth_users_has(u, "alice") && auth_users_has(u, "bob"), "has alice, bob");
	CHECK(!auth_users_has(u, "carol") && !auth_users_has(u, "Alice"), "has carol/Alice");
	CHECK(strcmp(auth_users_name(u, 0), "alice") == 0, "name 0: %s", auth_users_name(u, 0));
	CHECK(strcmp(auth_users_name(u, 1), "bob") == 0, "name 1: %s", auth_users_name(u, 1));
	CHECK(auth_users_name(u, want_n) == NULL, "name past the end");

	for (size_t i = 0; i < sizeof login_cases / sizeof login_cases[0]; i++) {
		const struct login_case *c = &login_cases[i];
		bool got = auth_users_verify(u, c->user, c->pass);
		CHECK(got == c->want, "login case %zu (%s / %s): %d, want %d", i,
		      c->user ? c->user : "(null)", c->pass ? "(given)" : "(null)", got, c->want);
	}
	auth_users_free(u);
	auth_users_free(NULL);
	CHECK(auth_users_count(NULL) == 0, "count of NULL");
}

/* ---- auth_throttle ---- */

static struct cidr_addr addr(const char *s)
{
	struct cidr_addr a;
	if (!cidr_addr_parse(s, &a))
		memset(&a, 0, sizeof a);
	return a;
}

/* One step of a throttle script: at time t, ev happens for address a;
 * then the delay for `probe` at time t must be want. */
enum ev { EV_NONE, EV_FAIL, EV_OK };

struct step {
	uint64_t t;
	enum ev ev;
	const char *a;
	const char *probe;
	unsigned want;
};

#define MIN_MS (60u * 1000u)
#define W AUTH_THROTTLE_WINDOW_MS

static const struct step script[] = {
	{ 1000, EV_NONE, NULL, "127.0.0.1", 0 },	/* nothing yet */
	{ 1000, EV_FAIL, "127.0.0.1", "127.0.0.1", 250 },
	{ 1100, EV_FAIL, "127.0.0.1", "127.0.0.1", 500 },
	{ 1200, EV_FAIL, "127.0.0.1", "127.0.0.1", 1000 },
	{ 1300, EV_FAIL, "127.0.0.1", "127.0.0.1", 2000 },
	{ 1400, EV_FAIL, "127.0.0.1", "127.0.0.1", 4000 },
	{ 1500, EV_FAIL, "127.0.0.1", "127.0.0.1", 8000 },
	{ 1600, EV_FAIL, "127.0.0.1", "127.0.0.1", 8000 },	/* capped */
	{ 1700, EV_FAIL, "127.0.0.1", "127.0.0.1", 8000 },
	/* other clients are not slowed by 127.0.0.1's failures */
	{ 1700, EV_NONE, NULL, "127.0.0.2", 0 },
	{ 1700, EV_NONE, NULL, "::1", 0 },
	/* the IPv4-mapped form is the same client */
	{ 1700, EV_NONE, NULL, "::ffff:127.0.0.1", 8000 },
	/* still remembered just before the window ends */
	{ 1700 + W - 1, EV_NONE, NULL, "127.0.0.1", 8000 },
	/* forgotten once the window has passed since the last failure */
	{ 1700 + W, EV_NONE, NULL, "127.0.0.1", 0 },
	/* a failure after the window starts counting again from one */
	{ 1700 + W + 5, EV_FAIL, "127.0.0.1", "127.0.0.1", 250 },
	{ 1700 + W + 6, EV_FAIL, "127.0.0.1", "127.0.0.1", 500 },
	/* a success clears the client's record */
	{ 1700 + W + 7, EV_OK, "127.0.0.1", "127.0.0.1", 0 },
	{ 1700 + W + 8, EV_FAIL, "127.0.0.1", "127.0.0.1", 250 },
	/* a success of another client changes nothing for this one */
	{ 1700 + W + 9, EV_FAIL, "::1", "::1", 250 },
	{ 1700 + W + 9, EV_OK, "127.0.0.2", "::1", 250 },
	{ 1700 + W + 9, EV_NONE, NULL, "127.0.0.1", 250 },
	/* IPv6 clients are tracked by their /64: ::2 is ::1's client */
	{ 1700 + W + 10, EV_FAIL, "::1", "::1", 500 },
	{ 1700 + W + 10, EV_NONE, NULL, "::2", 500 },
	{ 1700 + W + 10, EV_NONE, NULL, "::1:0:0:0:1", 0 },
	/* the window runs from the last failure, not the first */
	{ 1700 + W + 10 + 10 * MIN_MS, EV_FAIL, "::1", "::1", 1000 },
	{ 1700 + W + 10 + 20 * MIN_MS, EV_NONE, NULL, "::1", 1000 },
	{ 1700 + W + 10 + 25 * MIN_MS, EV_NONE, NULL, "::1", 0 },
};

static void test_throttle_script(void)
{
	static struct auth_throttle t;
	auth_throttle_init(&t);
	for (size_t i = 0; i < sizeof script / sizeof script[0]; i++) {
		const struct step *s = &script[i];
		struct cidr_addr a = addr(s->a ? s->a : "0.0.0.0");
		if (s->ev == EV_FAIL)
			auth_throttle_failure(&t, &a, s->t);
		else if (s->ev == EV_OK)
			auth_throttle_success(&t, &a);
		struct cidr_addr p = addr(s->probe);
		unsigned got = auth_throttle_delay_ms(&t, &p, s->t);
		CHECK(got == s->want, "throttle step %zu (t=%llu, %s): delay %u ms, want %u", i,
		      (unsigned long long)s->t, s->probe, got, s->want);
	}
}

/* The client key: /32 for IPv4, /64 for IPv6, IPv4-mapped is IPv4. */
struct prefix_case {
	const char *a, *b;
	bool same;
};

static const struct prefix_case prefix_cases[] = {
	{ "127.0.0.1", "127.0.0.1", true },
	{ "127.0.0.1", "127.0.0.2", false },
	{ "127.0.0.1", "::ffff:127.0.0.1", true },
	{ "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", true },
	{ "2001:db8:1:2::1", "2001:db8:1:3::1", false },
	{ "2001:db8:1:2::1", "2001:db8:2:2::1", false },
	{ "fe80::1", "fe80::2", true },
	{ "::1", "::2", true },
	{ "::", "0.0.0.0", false },
	{ "2001:db8::1", "32.1.13.184", false },	/* same first four bytes */
};

static void test_throttle_prefixes(void)
{
	for (size_t i = 0; i < sizeof prefix_cases / sizeof prefix_cases[0]; i++) {
		const struct prefix_case *c = &prefix_cases[i];
		struct cidr_addr a = addr(c->a), b = addr(c->b), ka, kb;
		auth_client_prefix(&a, &ka);
		auth_client_prefix(&b, &kb);
		CHECK(cidr_addr_equal(&ka, &kb) == c->same, "prefix case %zu: %s and %s same=%d", i,
		      c->a, c->b, !c->same);
		/* and the throttle agrees: a failure of a is counted for b */
		static struct auth_throttle t;
		auth_throttle_init(&t);
		auth_throttle_failure(&t, &a, 5000);
		CHECK((auth_throttle_failures(&t, &b, 5000) == 1) == c->same,
		      "prefix case %zu: throttle shares %s's failure with %s: %u", i, c->a, c->b,
		      auth_throttle_failures(&t, &b, 5000));
	}
}

/* The throttle the daemon used to run hashed the address into one of 256
 * slots (FNV-1a); a client whose address fell into the same slot reset
 * the other's record. Find such a pair and show that neither touches the
 * other's record now. */
static uint32_t old_slot(const struct cidr_addr *a)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof a->b; i++)
		h = (h ^ a->b[i]) * 16777619u;
	return h % 256;
}

static void test_throttle_collision(void)
{
	static struct auth_throttle t;
	auth_throttle_init(&t);
	struct cidr_addr victim = addr("127.0.0.1"), other;
	char buf[32];
	bool found = false;
	for (unsigned i = 2; i < 65536 && !found; i++) {
		snprintf(buf, sizeof buf, "127.0.%u.%u", i / 256, i % 256);
		other = addr(buf);
		found = old_slot(&other) == old_slot(&victim);
	}
	CHECK(found, "no address shares 127.0.0.1's old slot");
	if (!found)
		return;

	for (int i = 0; i < 3; i++)
		auth_throttle_failure(&t, &victim, 1000 + i);
	/* script: at t, ev by `other`; then the victim's failures */
	static const struct {
		uint64_t t;
		enum ev ev;
		unsigned victim_failures, other_failures;
	} steps[] = {
		{ 2000, EV_NONE, 3, 0 },
		{ 2001, EV_FAIL, 3, 1 },	/* once reset the victim to 0 */
		{ 2002, EV_FAIL, 3, 2 },
		{ 2003, EV_OK, 3, 0 },		/* once cleared the shared slot */
		{ 2004, EV_FAIL, 3, 1 },
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		if (steps[i].ev == EV_FAIL)
			auth_throttle_failure(&t, &other, steps[i].t);
		else if (steps[i].ev == EV_OK)
			auth_throttle_success(&t, &other);
		unsigned v = auth_throttle_failures(&t, &victim, steps[i].t);
		unsigned o = auth_throttle_failures(&t, &other, steps[i].t);
		CHECK(v == steps[i].victim_failures && o == steps[i].other_failures,
		      "collision step %zu (%s): victim %u, other %u failures; want %u, %u", i, buf, v,
		      o, steps[i].victim_failures, steps[i].other_failures);
	}
	CHECK(auth_throttle_delay_ms(&t, &victim, 2005) == 1000, "victim's delay %u",
	      auth_throttle_delay_ms(&t, &victim, 2005));

	/* Every other key of a nearly full table, each failing and
	 * succeeding: the victim's record is exactly what it was. */
	for (unsigned i = 0; i < AUTH_THROTTLE_SLOTS - 1; i++) {
		snprintf(buf, sizeof buf, "127.1.%u.%u", i / 256, i % 256);
		struct cidr_addr a = addr(buf);
		auth_throttle_failure(&t, &a, 3000);
		auth_throttle_failure(&t, &a, 3000);
		if (i % 2)
			auth_throttle_success(&t, &a);
	}
	CHECK(auth_throttle_failures(&t, &victim, 3000) == 3, "victim after a full table: %u",
	      auth_throttle_failures(&t, &victim, 3000));
}

/* A full table: a newcomer takes the place of the record that expires
 * first (every record lives the same window from its last failure), never
 * of one that expires later. Clients c0.. fill the table, ci failing last
 * at 1000 + i (c0 again later); each row is a newcomer's failure at t and
 * the client that must have lost its record then. */
struct evict_case {
	uint64_t t;
	const char *newcomer;
	int evicted;		/* the client that gives way; -2: nobody */
};

#define LAST_FILL (1000 + AUTH_THROTTLE_SLOTS - 1)

static const struct evict_case evict_cases[] = {
	/* c0 failed again at LAST_FILL + 1, so c1 is the oldest now */
	{ LAST_FILL + 2, "2001:db8:0:1::1", 1 },
	{ LAST_FILL + 3, "2001:db8:0:2::1", 2 },
	/* a newcomer of an existing /64 is no newcomer: nobody is evicted */
	{ LAST_FILL + 4, "2001:db8:0:1::2", -2 },
	{ LAST_FILL + 5, "2001:db8:0:3::1", 3 },
	/* a window later c4's record has expired: it goes */
	{ 1004 + W, "2001:db8:0:4::1", 4 },
	/* nothing else has expired: the live record that expires first gives
	 * way, never a younger one (c0, renewed; the newcomers) */
	{ 1004 + W, "2001:db8:0:5::1", 5 },
	{ LAST_FILL + W, "2001:db8:0:6::1", 6 },
};

static void test_throttle_eviction(void)
{
	static struct auth_throttle t;
	auth_throttle_init(&t);
	char buf[32];
	struct cidr_addr a;

	for (unsigned i = 0; i < AUTH_THROTTLE_SLOTS; i++) {
		snprintf(buf, sizeof buf, "127.1.%u.%u", i / 256, i % 256);
		a = addr(buf);
		auth_throttle_failure(&t, &a, 1000 + i);
	}
	CHECK(t.n == AUTH_THROTTLE_SLOTS, "table holds %zu", t.n);
	a = addr("127.1.0.0");
	auth_throttle_failure(&t, &a, LAST_FILL + 1);
	CHECK(auth_throttle_failures(&t, &a, LAST_FILL + 1) == 2, "c0 after two failures");

	for (size_t k = 0; k < sizeof evict_cases / sizeof evict_cases[0]; k++) {
		const struct evict_case *c = &evict_cases[k];
		struct cidr_addr n = addr(c->newcomer);
		unsigned before = auth_throttle_failures(&t, &n, c->t);
		auth_throttle_failure(&t, &n, c->t);
		CHECK(t.n == AUTH_THROTTLE_SLOTS, "row %zu: table holds %zu", k, t.n);
		CHECK(auth_throttle_failures(&t, &n, c->t) == before + 1,
		      "row %zu: newcomer %s has %u failures", k, c->newcomer,
		      auth_throttle_failures(&t, &n, c->t));
		/* exactly the expected client is gone; its neighbours are not */
		for (int i = 0; i < 8; i++) {
			snprintf(buf, sizeof buf, "127.1.0.%d", i);
			a = addr(buf);
			bool gone = true;
			for (size_t j = 0; j < t.n; j++) {
				struct cidr_addr key;
				auth_client_prefix(&a, &key);
				if (cidr_addr_equal(&t.e[j].key, &key))
					gone = false;
			}
			bool want_gone = i >= 1 && i <= (c->evicted >= 0 ? c->evicted
							    : evict_cases[k - 1].evicted);
			CHECK(gone == want_gone, "row %zu: client c%d %s", k, i,
			      gone ? "evicted" : "still there");
		}
	}
	/* the first newcomer survived every later eviction */
	a = addr("2001:db8:0:1::9");
	CHECK(auth_throttle_failures(&t, &a, LAST_FILL + W) == 2, "2001:db8:0:1::/64 has %u failures",
	      auth_throttle_failures(&t, &a, LAST_FILL + W));
}

/* The copy of the credentials a worker gets: exact, bounded, wiped. */
static void test_creds(void)
{
	struct auth_creds c;
	memset(&c, 0x5a, sizeof c);
	CHECK(auth_creds_set(&c, "alice", "correct horse"), "set");
	CHECK(strcmp(c.user, "alice") == 0 && strcmp(c.pass, "correct horse") == 0, "copied");
	auth_creds_wipe(&c);
	static const struct auth_creds zero;
	CHECK(memcmp(&c, &zero, sizeof c) == 0, "credentials not zero after auth_creds_wipe");

	char longer[300];
	memset(longer, 'p', sizeof longer - 1);
	longer[sizeof longer - 1] = '\0';
	memset(&c, 0x5a, sizeof c);
	CHECK(!auth_creds_set(&c, "alice", longer), "a 299-byte password fits 256 bytes");
	CHECK(memcmp(&c, &zero, sizeof c) == 0, "refused credentials left behind");
	longer[255] = '\0';
	CHECK(auth_creds_set(&c, longer, longer), "255 bytes each");
	CHECK(!auth_creds_set(&c, NULL, "x") && !auth_creds_set(&c, "x", NULL), "NULL accepted");
}

int main(void)
{
	test_hash_check();
	test_throttle_script();
	test_throttle_prefixes();
	test_throttle_collision();
	test_throttle_eviction();
	test_creds();
	test_verify_vectors();
	test_hash_password();
	test_users();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
