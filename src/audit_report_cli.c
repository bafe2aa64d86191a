/*
 * audit_report_cli: the command line of `tailfence audit report`: its
 * options, reading the files into the report with a progress line, and
 * writing the page (or the JSON) to a file or stdout. The report itself is
 * audit_report.c.
 */
#include "tailfence/audit_report.h"

#include "tailfence/audit.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD "audit report"

static const char report_usage[] =
	"usage: tailfence audit report [FILTERS] [--key KEYFILE] [--json] [-o OUT] FILE...\n"
	"\n"
	"Writes one self-contained HTML file (no scripts, nothing fetched) about the\n"
	"records in FILE... (oldest first, e.g. audit.jsonl-20240501.gz audit.jsonl;\n"
	"gzip-compressed files too; stdin when no FILE): the period and totals, the\n"
	"HMAC chain's verdict, connections and bytes over time with restarts and\n"
	"unclean shutdowns, who went where, denied attempts and their reasons, the\n"
	"busiest and longest connections, destinations new in the period, and the\n"
	"tailnet peer and path per destination. Records before --since are the\n"
	"history that \"new\" is measured against.\n"
	"\n"
	AUDIT_READ_FILTER_HELP
	"\n"
	"Options:\n"
	"  -o, --output OUT   write to OUT (default: stdout)\n"
	"  --json             the same figures as one JSON object instead of HTML\n"
	"  --key KEYFILE      verify the HMAC chain over every line of every FILE\n"
	"  --top N            rows shown per table; busiest/longest kept (default 30)\n"
	"  --max-keys N       rows kept per table (default 20000); more are summed as \"other\"\n"
	"  -q, --quiet        no progress line on stderr\n"
	"\n"
	"Exit status: 0 written, 1 written but the chain did not verify, 2 error.\n";

enum { ROPT_JSON = AUDIT_READ_OPT_NEXT, ROPT_KEY, ROPT_TOP, ROPT_MAX_KEYS };

static const struct option report_opts[] = {
	AUDIT_READ_FILTER_OPTIONS,
	{ "output", required_argument, NULL, 'o' },
	{ "json", no_argument, NULL, ROPT_JSON },
	{ "key", required_argument, NULL, ROPT_KEY },
	{ "top", required_argument, NULL, ROPT_TOP },
	{ "max-keys", required_argument, NULL, ROPT_MAX_KEYS },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct report_cli {
	struct audit_report_options opt;
	const char *out, *keyfile;
	bool json, quiet;
	char filters[1024];
};

static bool parse_count(const char *arg, const char *name, size_t max, size_t *v)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(arg, &end, 10);
	if (end == arg || *end || errno || n == 0 || n > max || arg[0] == '-') {
		fprintf(stderr, "tailfence " CMD ": --%s \"%s\": expected a number from 1 to %zu\n",
			name, arg, max);
		return false;
	}
	*v = (size_t)n;
	return true;
}

/* Adds "--name value" of a filter option to the text shown in the report. */
static void note_filter(struct report_cli *c, int opt, const char *arg)
{
	for (const struct option *o = report_opts; o->name; o++) {
		if (o->val != opt)
			continue;
		size_t l = strlen(c->filters);
		snprintf(c->filters + l, sizeof c->filters - l, "%s--%s %s", l ? " " : "",
			 o->name, arg);
		return;
	}
}

/* Parses argv; returns -1 to go on, else an exit status. */
static int report_args(int argc, char **argv, struct report_cli *c)
{
	int o;
	optind = 0;	/* full re-initialisation: the CLI may run twice in one process */
	opterr = 0;
	while ((o = getopt_long(argc, argv, "o:qh", report_opts, NULL)) != -1) {
		int f = audit_read_filter_option(&c->opt.filter, o, optarg, CMD);
		if (f < 0)
			return 2;
		if (f > 0) {
			note_filter(c, o, optarg);
			continue;
		}
		switch (o) {
		case 'o':
			c->out = optarg;
			break;
		case ROPT_JSON:
			c->json = true;
			break;
		case ROPT_KEY:
			c->keyfile = optarg;
			break;
		case ROPT_TOP:
			if (!parse_count(optarg, "top", 100000, &c->opt.top))
				return 2;
			break;
		case ROPT_MAX_KEYS:
			if (!parse_count(optarg, "max-keys", 10000000, &c->opt.max_keys))
				return 2;
			break;
		case 'q':
			c->quiet = true;
			break;
		case 'h':
			fputs(report_usage, stdout);
			return 0;
		default:
			fprintf(stderr, "tailfence " CMD ": unknown or incomplete option \"%s\"\n%s",
				argv[optind - 1], report_usage);
			return 2;
		}
	}
	return audit_read_filter_check(&c->opt.filter, CMD) ? -1 : 2;
}

/* Reading state for the progress line. */
struct report_run {
	struct audit_report *r;
	bool quiet, tty, shown;
	struct timespec t0, last;
	int index;			/* the file being read */
	uint64_t before, total;		/* bytes of the files before it; of all */
	uint64_t *sizes;
};

static double since_s(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* A progress line on stderr once a run takes more than two seconds: in
 * place every second on a terminal, a new line every ten otherwise. */
static void report_progress(struct report_run *run, const struct audit_read_src *src)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (since_s(&run->t0, &now) < 2 || since_s(&run->last, &now) < (run->tty ? 1 : 10))
		return;
	run->last = now;
	run->shown = true;
	uint64_t done = run->before + (uint64_t)gzoffset(src->gz);
	char d[32], t[32];
	audit_read_fmt_bytes(done, d, sizeof d);
	audit_read_fmt_bytes(run->total, t, sizeof t);
	fprintf(stderr, "%stailfence " CMD ": %" PRIu64 " lines, %s of %s read (file %d of %d)%s",
		run->tty ? "\r" : "", run->r->lines, d, t, src->index + 1, src->count,
		run->tty ? "\033[K" : "\n");
}

static void report_file_line(void *ctx, const struct audit_read_src *src, const char *line,
			     size_t len, bool terminated)
{
	struct report_run *run = ctx;
	audit_report_line(run->r, src->file, src->lineno, line, len, terminated);
	if (src->index != run->index) {
		run->before += run->sizes[run->index];
		run->index = src->index;
	}
	if (!run->quiet && (run->r->lines & 0x3fff) == 0)
		report_progress(run, src);
}

/* Reads every input into r. Returns 0, or 2 when an input was unreadable. */
static int report_read(struct audit_report *r, int n, char **files, bool quiet)
{
	struct report_run run = { .r = r, .quiet = quiet, .tty = isatty(STDERR_FILENO) };
	run.sizes = calloc((size_t)n + 1, sizeof *run.sizes);
	if (!run.sizes) {
		fprintf(stderr, "tailfence " CMD ": out of memory\n");
		return 2;
	}
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (strcmp(files[i], "-") != 0 && stat(files[i], &st) == 0)
			run.sizes[i] = (uint64_t)st.st_size;
		run.total += run.sizes[i];
	}
	clock_gettime(CLOCK_MONOTONIC, &run.t0);
	run.last = run.t0;
	int rc = audit_read_files(n, files, CMD, report_file_line, &run);
	if (run.shown && run.tty)
		fputc('\n', stderr);
	free(run.sizes);
	return rc;
}

/* Writes the report to c->out (stdout when NULL or "-"). */
static bool report_write(const struct report_cli *c, const struct audit_report *r,
			 char *const *inputs, int n)
{
	bool to_stdout = !c->out || strcmp(c->out, "-") == 0;
	FILE *out = to_stdout ? stdout : fopen(c->out, "w");
	if (!out) {
		fprintf(stderr, "tailfence " CMD ": cannot write \"%s\": %s\n", c->out,
			strerror(errno));
		return false;
	}
	bool ok = c->json ? audit_report_write_json(r, out, inputs, n)
			  : audit_report_write_html(r, out, inputs, n);
	int err = ok ? 0 : errno;
	if (to_stdout) {
		ok = fflush(out) == 0 && ok;
	} else if (fclose(out) != 0) {
		err = errno;
		ok = false;
	}
	if (!ok) {
		fprintf(stderr, "tailfence " CMD ": writing \"%s\" failed: %s\n",
			to_stdout ? "stdout" : c->out, err ? strerror(err) : "out of memory");
		if (!to_stdout)
			unlink(c->out);
	}
	return ok;
}

int audit_report_main(int argc, char **argv)
{
	struct report_cli c = { 0 };
	int rc = report_args(argc, argv, &c);
	if (rc >= 0)
		return rc;
	unsigned char *key = NULL;
	size_t keylen = 0;
	char err[512];
	if (c.keyfile && !audit_key_load(c.keyfile, &key, &keylen, err, sizeof err)) {
		fprintf(stderr, "tailfence " CMD ": %s\n", err);
		return 2;
	}
	c.opt.key = key;
	c.opt.keylen = keylen;
	c.opt.filter_text = c.filters[0] ? c.filters : NULL;
	struct audit_report *r = audit_report_new(&c.opt);
	if (key)
		OPENSSL_cleanse(key, keylen);
	free(key);
	if (!r) {
		fprintf(stderr, "tailfence " CMD ": out of memory\n");
		return 2;
	}
	static char *dash[] = { (char *)"-" };
	int n = argc - optind;
	char **files = n ? argv + optind : dash;
	rc = report_read(r, n, argv + optind, c.quiet);
	if (rc == 0) {
		audit_report_finish(r);
		if (!report_write(&c, r, files, n ? n : 1))
			rc = 2;
		else if (r->chain_checked && !r->chain_verified)
			rc = 1;
	}
	audit_report_free(r);
	return rc;
}
