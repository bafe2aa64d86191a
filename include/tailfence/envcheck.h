/*
 * envcheck: the container deployment's environment (the variables of
 * contrib/railway/entrypoint, listed in docs/railway.md), checked by
 * tailfence itself so that there is one validator: the entrypoint runs
 * `tailfence config check --env` before anything starts and keeps to
 * orchestration (programs, directories, the auth key, PORT).
 *
 * Reads variables only through a lookup function, so the unit tests drive
 * it with tables; the only other thing it looks at is whether
 * TAILFENCE_CONFIG can be read and whether TAILFENCE_AUDIT_FILE is a
 * directory. Errors name the variable, the value (a list's entry too) and
 * the fix, the way the entrypoint always printed them.
 */
#ifndef TAILFENCE_ENVCHECK_H
#define TAILFENCE_ENVCHECK_H

#include <stdbool.h>
#include <stddef.h>

/* Returns the variable's value or NULL when it is not set. */
typedef const char *(*envcheck_lookup)(void *arg, const char *name);

struct envcheck_error {
	char var[48];
	char value[300];	/* as given; never a secret */
	char reason[400];	/* "has host bits set", "entry \"x\": is not a tag" */
	char fix[400];		/* "did you mean 10.0.0.0/24?" */
};

/* The variables with defaults applied and lists normalised (entries
 * trimmed, prefixes in canonical form), plus TAILFENCE_PROXY_ADDR (the
 * first listen address, the one the app is given). Secrets are not kept.
 * NO_PROXY holds only the user's extra entries. With TAILFENCE_INBOUND,
 * TAILFENCE_INBOUND_SERVE is the ServeConfig JSON (one line) that makes
 * tailscaled forward each tailnet port to its tailfence listener with a
 * PROXY v2 header, for `tailscale serve set-raw`; empty without. */
#define ENVCHECK_MAX_VARS 24
struct envcheck_result {
	struct {
		const char *name;	/* static */
		char *value;		/* owned */
	} v[ENVCHECK_MAX_VARS];
	size_t n;
};

/* Checks every variable; false at the first bad one, described in *err
 * (res then holds nothing). On success res holds the normalised values;
 * free them with envcheck_result_free. */
bool envcheck_run(envcheck_lookup get, void *arg, struct envcheck_result *res,
		  struct envcheck_error *err);

/* The normalised value of name, or NULL. */
const char *envcheck_result_get(const struct envcheck_result *res, const char *name);

void envcheck_result_free(struct envcheck_result *res);

#endif
