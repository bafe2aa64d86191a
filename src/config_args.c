/*
 * config_args: the command line. The flags are the settings table's; each
 * value is kept as given, per row, so that a reload builds the config
 * again from the same flags. --help and `tailfence config reference` (the
 * settings table in docs/config.md) are printed from the same rows.
 */
#include "config_internal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TAILFENCE_VERSION
#define TAILFENCE_VERSION "unknown"
#endif

struct config_args {
	struct strv *vals;	/* per row of config_settings */
	struct strv positional;
};

bool strv_add(struct strv *s, const char *x)
{
	char **v = realloc(s->v, (s->n + 1) * sizeof *v);
	if (!v)
		return false;
	s->v = v;
	if (!(s->v[s->n] = strdup(x)))
		return false;
	s->n++;
	return true;
}

void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

void config_args_free(struct config_args *a)
{
	if (!a)
		return;
	for (size_t i = 0; a->vals && i < config_n_settings; i++)
		strv_free(&a->vals[i]);
	free(a->vals);
	strv_free(&a->positional);
	free(a);
}

const struct strv *config_args_values(const struct config_args *a, const struct setting *s)
{
	return a ? &a->vals[s - config_settings] : NULL;
}

static const char *last_value(const struct config_args *a, const char *flag)
{
	const struct strv *v = config_args_values(a, setting_by_flag(flag));
	return v && v->n ? v->v[v->n - 1] : NULL;
}

const char *config_args_user(const struct config_args *a) { return last_value(a, "user"); }
const char *config_args_src(const struct config_args *a) { return last_value(a, "src"); }
size_t config_args_npositional(const struct config_args *a) { return a->positional.n; }

const char *config_args_positional(const struct config_args *a, size_t i)
{
	return i < a->positional.n ? a->positional.v[i] : NULL;
}

void config_args_set_file(struct config_args *a, const char *path)
{
	struct strv *v = &a->vals[setting_by_flag("config") - config_settings];
	strv_free(v);
	strv_add(v, path);
}

/* ------------------------------------------------------------------ */
/* help */

enum { HELP_COL = 28, HELP_WIDTH = 79 };

/* Prints text word-wrapped from column HELP_COL, the first line starting
 * at column at. */
static void wrap(FILE *f, const char *text, int at)
{
	const char *p = text;
	int col = at;
	bool first = true;
	while (*p) {
		while (*p == ' ')
			p++;
		size_t w = strcspn(p, " ");
		if (!w)
			break;
		if (!first && col + 1 + (int)w > HELP_WIDTH) {
			fprintf(f, "\n%*s", HELP_COL, "");
			col = HELP_COL;
			first = true;
		}
		col += fprintf(f, "%s%.*s", first ? "" : " ", (int)w, p);
		first = false;
		p += w;
	}
	fputc('\n', f);
}

static void help_row(FILE *f, const struct setting *s)
{
	char text[900];
	int n = fprintf(f, "  --%s%s%s", s->flag, s->arg ? " " : "", s->arg ? s->arg : "");
	if (n >= HELP_COL - 1) {
		fprintf(f, "\n%*s", HELP_COL, "");
		n = HELP_COL;
	} else {
		n += fprintf(f, "%*s", HELP_COL - n, "");
	}
	snprintf(text, sizeof text, "%s (%s%sdefault %s)", s->help, s->env ? s->env : "",
		 s->env ? "; " : "", setting_default_text(s));
	wrap(f, text, n);
}

static void print_help(FILE *f, const struct config_command *cmd)
{
	fprintf(f, "%s\n\n", cmd->usage);
	if (cmd->about)
		fprintf(f, "%s\n\n", cmd->about);
	if (cmd->options)
		fprintf(f, "%s\n", cmd->options);
	if (cmd->check) {
		for (size_t i = 0; i < config_n_settings; i++)
			if (config_settings[i].flags & SF_CHECK_ONLY)
				help_row(f, &config_settings[i]);
		fputc('\n', f);
	}
	fprintf(f, "%s:\n", cmd->daemon ? "Settings (flag, variable, default)"
				       : "The daemon's settings, so that the answer is the one the "
					 "daemon would give");
	for (size_t i = 0; i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		if (s->flag && !(s->flags & SF_CHECK_ONLY))
			help_row(f, s);
	}
	fputs("  --version                 print the version and exit\n"
	      "  --help                    print this help and exit\n"
	      "\n"
	      "Precedence: flag > variable > config file > default. DUR is 250ms, 10s, 15m,\n"
	      "1h or a number of seconds. A variable holding a list is comma-separated.\n"
	      "Every setting with its file key: docs/config.md or `tailfence config reference`.\n",
	      f);
	if (cmd->daemon)
		fputs("Subcommands: check, status, config, audit, passwd (tailfence help).\n", f);
}

/* Markdown: `|` in a table cell is escaped. */
static void md_cell(FILE *f, const char *s, bool code)
{
	fputs(code ? " `" : " ", f);
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputs(code ? "` |" : " |", f);
}

void config_print_reference(FILE *f)
{
	fputs("| File key | Flag | Variable | Default | Meaning |\n"
	      "|---|---|---|---|---|\n", f);
	for (size_t i = 0; i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		char flag[120];
		fputc('|', f);
		if (s->key)
			md_cell(f, s->key, true);
		else
			md_cell(f, "-", false);
		if (s->flag) {
			snprintf(flag, sizeof flag, "--%s%s%s", s->flag, s->arg ? " " : "",
				 s->arg ? s->arg : "");
			md_cell(f, flag, true);
		} else {
			md_cell(f, "-", false);
		}
		if (s->env)
			md_cell(f, s->env, true);
		else
			md_cell(f, "-", false);
		md_cell(f, setting_default_text(s), s->def && !s->def_text);
		md_cell(f, s->help, false);
		fputc('\n', f);
	}
}

/* ------------------------------------------------------------------ */
/* parsing */

/* getopt values: settings are OPT_SETTING + their row */
enum { OPT_VERSION = 1000, OPT_HELP, OPT_SETTING = 2000 };

int config_args_parse_cmd(int argc, char **argv, const struct config_command *cmd,
			  struct config_args **out)
{
	struct option opts[config_n_settings + 3];
	size_t n = 0;
	*out = NULL;
	for (size_t i = 0; i < config_n_settings; i++) {
		const struct setting *s = &config_settings[i];
		if (!s->flag)
			continue;
		opts[n++] = (struct option){ s->flag, s->arg ? required_argument : no_argument, NULL,
					     OPT_SETTING + (int)i };
	}
	opts[n++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	opts[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	opts[n] = (struct option){ NULL, 0, NULL, 0 };

	struct config_args *a = calloc(1, sizeof *a);
	if (!a || !(a->vals = calloc(config_n_settings, sizeof *a->vals))) {
		free(a);
		return 2;
	}
	const char *prog = "tailfence";
	optind = 0;	/* GNU: full reinitialisation, so parsing can run twice */
	opterr = 0;
	for (;;) {
		int c = getopt_long(argc, argv, "+", opts, NULL);
		if (c == -1)
			break;
		if (c >= OPT_SETTING) {
			const struct setting *s = &config_settings[c - OPT_SETTING];
			if ((s->flags & SF_CHECK_ONLY) && !cmd->check) {
				fprintf(stderr, "%s: --%s is only for `tailfence check`\n"
					"Try '%s --help'.\n", prog, s->flag, cmd->name);
				config_args_free(a);
				return 2;
			}
			struct strv *v = &a->vals[c - OPT_SETTING];
			if (!(s->flags & SF_LIST))
				strv_free(v);	/* the last one given wins */
			if (!strv_add(v, s->arg ? optarg : s->switch_to)) {
				config_args_free(a);
				return 2;
			}
			continue;
		}
		if (c == OPT_VERSION) {
			printf("tailfence %s\n", TAILFENCE_VERSION);
			config_args_free(a);
			return 1;
		}
		if (c == OPT_HELP) {
			print_help(stdout, cmd);
			config_args_free(a);
			return 1;
		}
		const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
		if (optopt > 0 && optopt < 256 && (bad[0] != '-' || bad[1] == '-'))
			fprintf(stderr, "%s: unknown flag \"-%c\"\n", prog, optopt);
		else if (optopt >= OPT_SETTING)
			fprintf(stderr, "%s: %s needs a value\n", prog, bad);
		else
			fprintf(stderr, "%s: unknown flag \"%s\"\n", prog, bad);
		fprintf(stderr, "Try '%s --help'.\n", cmd->name);
		config_args_free(a);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		if (a->positional.n >= cmd->max_positional) {
			fprintf(stderr, "%s: unexpected argument \"%s\"\nTry '%s --help'.\n", prog,
				argv[i], cmd->name);
			config_args_free(a);
			return 2;
		}
		strv_add(&a->positional, argv[i]);
	}
	*out = a;
	return 0;
}

static const struct config_command daemon_command = {
	.name = "tailfence",
	.usage = "usage: tailfence [run] [FLAGS]",
	.about = "A policy-enforcing, auditing SOCKS5/SOCKS4a/HTTP proxy in front of tailscaled:\n"
		 "one loopback port, a fence drawn from what the tailnet carries, one audit\n"
		 "record per decision and per close.",
	.daemon = true,
};

int config_args_parse(int argc, char **argv, struct config_args **out)
{
	return config_args_parse_cmd(argc, argv, &daemon_command, out);
}
