/*
 * config_internal: what the four parts of the configuration share. Not a
 * public header; only config*.c include it.
 *
 *   config_table.c  the settings: one row per setting (file key, flag,
 *                   variable, type, bounds, default, help) and its setter
 *   config_args.c   the flags and --help, both generated from the table
 *   config_json.c   the file syntax (JSON with comments and trailing commas)
 *                   and its typed accessors
 *   config.c        defaults < file < environment < flags, then the checks
 *                   across settings, the compiled policy and `config show`
 *
 * Adding a setting is one row in config_table.c plus the code that uses it.
 */
#ifndef TAILFENCE_CONFIG_INTERNAL_H
#define TAILFENCE_CONFIG_INTERNAL_H

#include "tailfence/config.h"
#include "tailfence/policy.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* ------------------------------------------------------------------ */
/* growable string lists */

struct strv {
	char **v;
	size_t n;
};

bool strv_add(struct strv *s, const char *x);
void strv_free(struct strv *s);

/* ------------------------------------------------------------------ */
/* errors: the first one wins */

struct config_err {
	char *buf;
	size_t len;
	bool failed;
};

__attribute__((format(printf, 2, 3)))
bool config_fail(struct config_err *e, const char *fmt, ...);

/* The value quoted for an error message: JSON-style escapes, at most 100
 * characters. */
const char *config_quote(const char *s, char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* where a value came from */

enum config_source { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

struct origin {
	enum config_source src;
	char text[300];		/* "default", "FILE: limits.idle_timeout", "TAILFENCE_UPSTREAM", "--listen" */
	bool indexed;		/* list items are named "text[i]" (file arrays) */
};

/* "origin" or "origin[i]" for the i-th item of a list. */
const char *origin_at(const struct origin *o, size_t i, char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* the build in progress */

struct route_entry {
	struct cidr_prefix p;
	char origin[320];
	char text[64];
};

struct config_build {
	struct config *c;
	struct policy_builder *b;
	struct config_err *err;
	const struct config_input *in;

	char listen_origin[320];	/* where the listeners came from */
	bool listen_indexed;
	char admin_origin[320];
	struct audit_sink_config *sinks;	/* the trail's sinks, once set */
	size_t n_sinks;
	bool sinks_set;
	char *syslog_extra;		/* --audit-syslog: one more sink */
	struct route_entry *routes;	/* add up across sources */
	size_t n_routes;
	struct strv lift;		/* guards lifted; add up across sources */
	struct strv allow;		/* --allow: rules after the file's */
	const cJSON *file_users;	/* borrowed from the parsed file */
	const cJSON *file_rules;
	struct {			/* inbound_config.c weighs these itself */
		const cJSON *file;
		const char *env, *env_policy, *env_listen, *env_peer_check;
		const char *const *flags;
		size_t n_flags;
		const char *flag_policy, *flag_listen, *flag_peer_check;
	} inbound;
};

bool build_add_sink(struct config_build *b, enum audit_sink_kind k, const char *path,
		    const char *target);
void build_clear_sinks(struct config_build *b);

/* ------------------------------------------------------------------ */
/* the settings table */

enum setting_kind {
	SK_DURATION,	/* unsigned milliseconds; min and max in milliseconds */
	SK_COUNT,	/* a whole number from min to max, into an unsigned or size_t */
	SK_BOOL,	/* true/false (a switch as a flag) */
	SK_CHOICE,	/* one of choices, stored as the matching values entry */
	SK_PATH,	/* a string (char *), null in the file for none */
	SK_OTHER,	/* the row's own setter */
};

enum setting_flag {
	SF_LIST = 1 << 0,	/* several values: a file array, a comma list, a repeatable flag */
	SF_ENV_WHOLE = 1 << 1,	/* the variable is one value, never split at commas */
	SF_ENV_EMPTY = 1 << 2,	/* an empty variable is a value, not "unset" */
	SF_CHECK_ONLY = 1 << 3,	/* a flag of `tailfence check` only */
	SF_NULL_OK = 1 << 4,	/* null in the file is a value */
};

struct setting;

/* Applies values given as text (n = 1 for a single value). */
typedef bool setting_set_fn(struct config_build *b, const struct setting *s,
			    const struct origin *o, const char *const *v, size_t n);
/* Applies the file's JSON value itself (objects, null). */
typedef bool setting_set_json_fn(struct config_build *b, const struct setting *s,
				 const struct origin *o, const cJSON *v);
/* The effective value, for `config show`; NULL leaves the key out. */
typedef cJSON *setting_show_fn(const struct config_build *b, const struct setting *s);

struct setting {
	const char *key;	/* file key path, "limits.idle_timeout"; NULL: not in the file */
	const char *flag;	/* "idle-timeout"; NULL: no flag */
	const char *env;	/* "TAILFENCE_IDLE_TIMEOUT"; NULL: no variable */
	const char *arg;	/* the flag's value in --help, "DUR"; NULL: a switch */
	enum setting_kind kind;
	unsigned flags;		/* enum setting_flag */
	size_t offset, size;	/* the field of struct config (generic kinds) */
	unsigned long long min, max;
	const char *const *choices;	/* SK_CHOICE: NULL-terminated names */
	const int *values;		/* SK_CHOICE: what each name stores */
	const char *what;	/* SK_CHOICE: "a log level" for "is not a log level" */
	const char *switch_to;	/* the value a switch flag gives: "true", "false" */
	const char *def;	/* the embedded default as a value; NULL: none applied */
	const char *def_text;	/* the default as --help shows it, when not def */
	const char *help;	/* one or two sentences */
	setting_set_fn *set;
	setting_set_json_fn *set_json;
	setting_show_fn *show;
};

extern const struct setting config_settings[];
extern const size_t config_n_settings;

/* The flag values given for a row, in order (config_args.c). */
const struct strv *config_args_values(const struct config_args *a, const struct setting *s);

/* The row with this flag name ("listen"), or NULL. */
const struct setting *setting_by_flag(const char *flag);

/* Applies values given as text with the row's setter or its kind's. */
bool setting_apply_text(struct config_build *b, const struct setting *s, const struct origin *o,
			const char *const *v, size_t n);
/* Applies the file's value: the row's JSON setter, or the value as text. */
bool setting_apply_json(struct config_build *b, const struct setting *s, const struct origin *o,
			const cJSON *v);
/* The effective value as JSON, or NULL to leave it out. */
cJSON *setting_show(const struct config_build *b, const struct setting *s);
/* The default as --help and the reference print it ("10s", "none"). */
const char *setting_default_text(const struct setting *s);

/* ------------------------------------------------------------------ */
/* the file (config_json.c) */

/* "a string", "an array", ... for "is %s; expected ...". */
const char *json_type_name(const cJSON *v);
/* Rejects keys of obj not in known (NULL-terminated) and duplicate keys. */
bool json_check_keys(struct config_err *e, const char *path, const cJSON *obj,
		     const char *const *known, size_t n_known);
/* A string, or an array of strings (a single string is a one-item list),
 * into a vector of borrowed pointers the caller frees. */
bool json_string_list(struct config_err *e, const char *path, const cJSON *v,
		      const char ***out, size_t *n);
/* A JSON string or number as text: durations take fractional seconds. */
bool json_scalar_text(struct config_err *e, const char *path, const cJSON *v, char *buf,
		      size_t len, bool duration);

/* ------------------------------------------------------------------ */
/* shared value parsers (config_table.c) */

/* "IP:PORT" or "[IPv6]:PORT"; "localhost" is 127.0.0.1; why says what is
 * wrong. With port_optional, a bare address takes default_port. */
bool config_parse_hostport(const char *s, struct cidr_addr *a, uint16_t *port,
			   bool port_optional, uint16_t default_port, const char **why);
void config_fmt_duration(unsigned ms, char *buf, size_t len);

#endif
