/*
 * test_auth: table-driven tests of the password hashes (hash, check,
 * verify; scrypt and PBKDF2 vectors computed with Python's hashlib, an
 * independent implementation), the user table with its verification cache,
 * and the per-client failure throttle (delays, window, reset, eviction).
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
	/* IPv6 clients are tracked by full address */
	{ 1700 + W + 10, EV_FAIL, "::1", "::1", 500 },
	{ 1700 + W + 10, EV_NONE, NULL, "::2", 0 },
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

/* A full table: the oldest client is evicted first; expired slots are
 * reused before live ones. */
static void test_throttle_eviction(void)
{
	static struct auth_throttle t;
	auth_throttle_init(&t);
	char buf[32];
	struct cidr_addr a;

	/* 256 clients 127.0.<i/256>.<i%256>, client i failing at time 1000+i */
	for (unsigned i = 0; i < AUTH_THROTTLE_SLOTS; i++) {
		snprintf(buf, sizeof buf, "127.1.%u.%u", i / 256, i % 256);
		a = addr(buf);
		auth_throttle_failure(&t, &a, 1000 + i);
	}
	/* client 0 fails again: it is now the newest */
	a = addr("127.1.0.0");
	auth_throttle_failure(&t, &a, 2000);
	CHECK(auth_throttle_delay_ms(&t, &a, 2000) == 500, "client 0 after two failures");

	/* a newcomer evicts the oldest, which is now client 1 */
	struct cidr_addr n1 = addr("127.2.0.1");
	auth_throttle_failure(&t, &n1, 2001);
	CHECK(auth_throttle_delay_ms(&t, &n1, 2001) == 250, "newcomer 1 tracked");
	a = addr("127.1.0.1");
	CHECK(auth_throttle_delay_ms(&t, &a, 2001) == 0, "oldest client (1) not evicted");
	a = addr("127.1.0.0");
	CHECK(auth_throttle_delay_ms(&t, &a, 2001) == 500, "client 0 evicted instead");
	a = addr("127.1.0.2");
	CHECK(auth_throttle_delay_ms(&t, &a, 2001) == 250, "client 2 evicted");
	for (unsigned i = 2; i < AUTH_THROTTLE_SLOTS; i++) {
		snprintf(buf, sizeof buf, "127.1.%u.%u", i / 256, i % 256);
		a = addr(buf);
		if (auth_throttle_delay_ms(&t, &a, 2001) != 250) {
			CHECK(false, "client %s lost after one eviction", buf);
			break;
		}
	}

	/* later, every old entry has expired except the newcomer's renewal:
	 * another newcomer must not evict the live one */
	uint64_t later = 1000 + AUTH_THROTTLE_SLOTS + W;
	auth_throttle_failure(&t, &n1, later);
	struct cidr_addr n2 = addr("127.2.0.2");
	auth_throttle_failure(&t, &n2, later + 1);
	CHECK(auth_throttle_delay_ms(&t, &n1, later + 1) == 500, "live client evicted over expired ones");
	CHECK(auth_throttle_delay_ms(&t, &n2, later + 1) == 250, "newcomer 2 tracked");
}

int main(void)
{
	test_hash_check();
	test_throttle_script();
	test_throttle_eviction();
	test_verify_vectors();
	test_hash_password();
	test_users();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
