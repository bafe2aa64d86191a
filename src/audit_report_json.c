/*
 * audit_report_json: the --json output of `tailfence audit report`: the
 * report's aggregates (audit_report.c) as one JSON object, for tests and
 * tooling. Written piece by piece (a table row at a time), so that the
 * output never needs the whole document in memory; record text is made
 * valid UTF-8 first.
 */
#include "tailfence/audit_report.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes `"name":` (with a comma before all but the first) and the value,
 * which it frees. */
static bool j_put(FILE *out, bool *first, const char *name, cJSON *v)
{
	char *s = v ? cJSON_PrintUnformatted(v) : NULL;
	cJSON_Delete(v);
	if (!s)
		return false;
	fprintf(out, "%s\"%s\":%s", *first ? "" : ",", name, s);
	*first = false;
	free(s);
	return true;
}

static void j_str(cJSON *o, const char *k, const char *v)
{
	if (!v) {
		cJSON_AddNullToObject(o, k);
		return;
	}
	char *c = audit_report_utf8_clean(v);
	cJSON_AddStringToObject(o, k, c);
	free(c);
}

static void j_time(cJSON *o, const char *k, int64_t t, bool has_t)
{
	char ts[40];
	if (!has_t || t == INT64_MAX || t == INT64_MIN) {
		cJSON_AddNullToObject(o, k);
		return;
	}
	audit_read_fmt_time(t, ts, sizeof ts);
	cJSON_AddStringToObject(o, k, ts);
}

static void j_num(cJSON *o, const char *k, uint64_t v)
{
	cJSON_AddNumberToObject(o, k, (double)v);
}

enum row_kind { ROW_PAIR, ROW_DENIED, ROW_DST, ROW_COUNT };

static cJSON *j_row(const struct audit_report_row *row, enum row_kind kind)
{
	cJSON *o = cJSON_CreateObject();
	static const char *const names[][AUDIT_REPORT_KEY_PARTS] = {
		[ROW_PAIR] = { "user", "destination" },
		[ROW_DENIED] = { "destination", "guard", "rule", "user" },
		[ROW_DST] = { "destination" },
		[ROW_COUNT] = { "key" },
	};
	for (int i = 0; i < AUDIT_REPORT_KEY_PARTS && names[kind][i]; i++)
		j_str(o, names[kind][i], row->k[i]);
	if (kind == ROW_COUNT) {
		j_num(o, "count", row->allow + row->closed);
		return o;
	}
	if (kind != ROW_DENIED)
		j_num(o, "allowed", row->allow);
	j_num(o, "denied", row->deny);
	if (kind != ROW_DENIED) {
		j_num(o, "closed", row->closed);
		j_num(o, "bytes_up", row->up);
		j_num(o, "bytes_down", row->down);
	}
	j_time(o, "first", row->first, true);
	j_time(o, "last", row->last, true);
	if (kind == ROW_DENIED) {
		j_str(o, "reason", row->note);
		cJSON_AddBoolToObject(o, "other_reasons", row->note_varied);
	}
	if (kind == ROW_DST) {
		j_str(o, "addr", row->note);
		cJSON_AddBoolToObject(o, "new", row->is_new);
		static const char *const paths[] = { NULL, "tailnet", "host", "mixed" };
		unsigned p = row->paths & 3;
		j_str(o, "path", row->paths & 4 ? "other" : paths[p]);
		cJSON *peer = cJSON_AddObjectToObject(o, "peer");
		j_str(peer, "name", row->peer_name);
		j_str(peer, "id", row->peer_id);
		j_str(peer, "route", row->peer_route);
		cJSON_AddBoolToObject(peer, "changed", row->peer_varied);
	}
	return o;
}

/* A table as {"full":..., "rows":[...], "other":...}, rows biggest first. */
static bool j_table(FILE *out, bool *first, const char *name,
		    const struct audit_report_table *t, enum row_kind kind)
{
	size_t n;
	const struct audit_report_row **v = audit_report_sorted(t, &n);
	fprintf(out, "%s\"%s\":{\"full\":%s,\"rows\":[", *first ? "" : ",", name,
		t->full ? "true" : "false");
	*first = false;
	bool ok = true, f = true;
	for (size_t i = 0; i < n && ok; i++) {
		cJSON *o = j_row(v[i], kind);
		char *s = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		ok = s != NULL;
		if (ok)
			fprintf(out, "%s%s", f ? "" : ",", s);
		f = false;
		free(s);
	}
	free(v);
	fputs("]", out);
	bool ff = false;
	if (ok)
		ok = j_put(out, &ff, "other", t->full ? j_row(&t->other, kind) : cJSON_CreateNull());
	fputs("}", out);
	return ok;
}

static cJSON *j_conns(const struct audit_report_top *t)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < t->n; i++) {
		const struct audit_report_conn *c = &t->v[i];
		cJSON *o = cJSON_CreateObject();
		j_time(o, "closed", c->t, c->has_t);
		j_num(o, "conn", c->id);
		j_str(o, "user", c->user);
		j_str(o, "client", c->client);
		j_str(o, "destination", c->dst);
		j_num(o, "bytes_up", c->up);
		j_num(o, "bytes_down", c->down);
		j_num(o, "duration_ms", c->duration_ms);
		j_str(o, "end", c->end);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

static cJSON *j_head(const struct audit_report *r, char *const *inputs, int n_inputs)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *in = cJSON_AddArrayToObject(o, "inputs");
	for (int i = 0; i < n_inputs; i++)
		cJSON_AddItemToArray(in, cJSON_CreateString(inputs[i]));
	j_str(o, "filters", r->opt.filter_text);
	j_time(o, "first", r->first, r->has_first);
	j_time(o, "last", r->last, r->has_first);
	j_time(o, "since", r->opt.filter.since, r->opt.filter.has_since);
	j_time(o, "until", r->opt.filter.until, r->opt.filter.has_until);
	return o;
}

static cJSON *j_totals(const struct audit_report *r)
{
	cJSON *o = cJSON_CreateObject();
	j_num(o, "lines", r->lines);
	j_num(o, "records", r->records);
	j_num(o, "bad_lines", r->bad_lines);
	j_num(o, "in_period", r->in_period);
	j_num(o, "without_time", r->no_time);
	j_num(o, "allowed", r->allow);
	j_num(o, "denied", r->deny);
	j_num(o, "closed", r->closed);
	j_num(o, "closed_without_decision", r->closed_unjoined);
	j_num(o, "bytes_up", r->up);
	j_num(o, "bytes_down", r->down);
	j_num(o, "users", r->users.n);
	j_num(o, "destinations", r->dsts.n);
	j_num(o, "clients", r->clients.n);
	j_num(o, "tailnet_decisions", r->tailnet_records);
	return o;
}

static cJSON *j_chain_lifecycle(const struct audit_report *r, bool chain)
{
	cJSON *o = cJSON_CreateObject();
	if (chain) {
		cJSON_AddBoolToObject(o, "checked", r->chain_checked);
		if (r->chain_checked)
			cJSON_AddBoolToObject(o, "verified", r->chain_verified);
		else
			cJSON_AddNullToObject(o, "verified");
		j_num(o, "records", r->chain_records);
		j_str(o, "message", r->chain_checked ? r->chain_msg : NULL);
		return o;
	}
	for (int k = 0; k < AUDIT_REPORT_EV_KINDS; k++)
		j_num(o, audit_report_event_name((enum audit_report_event_kind)k), r->ev_count[k]);
	j_num(o, "lost_records", r->lost);
	j_num(o, "missing_records", r->missing_seq);
	j_num(o, "unclosed_connections", r->unclosed);
	cJSON *ev = cJSON_AddArrayToObject(o, "events");
	for (size_t i = 0; i < r->n_events; i++) {
		const struct audit_report_event *e = &r->events[i];
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "kind", audit_report_event_name(e->kind));
		j_time(x, "ts", e->t, e->has_t);
		j_time(x, "until", e->until, e->has_t);
		j_str(x, "detail", e->detail);
		cJSON_AddItemToArray(ev, x);
	}
	return o;
}

static cJSON *j_timeline(const struct audit_report *r)
{
	cJSON *o = cJSON_CreateObject();
	j_time(o, "start", r->tl.start, r->tl.n > 0);
	j_num(o, "interval_ms", (uint64_t)r->tl.width);
	cJSON *a = cJSON_AddArrayToObject(o, "buckets");
	for (size_t i = 0; i < r->tl.n; i++) {
		cJSON *b = cJSON_CreateObject();
		j_time(b, "ts", r->tl.start + (int64_t)i * r->tl.width, true);
		j_num(b, "allowed", r->tl.b[i].allow);
		j_num(b, "denied", r->tl.b[i].deny);
		j_num(b, "bytes_up", r->tl.b[i].up);
		j_num(b, "bytes_down", r->tl.b[i].down);
		cJSON_AddItemToArray(a, b);
	}
	return o;
}

static cJSON *j_new(const struct audit_report *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "history", r->history_from_first_day ? "first_day" : "before_period");
	j_time(o, "history_until", r->history_until, r->history_from_first_day ? r->has_first : true);
	j_num(o, "history_destinations", r->history_n);
	cJSON_AddBoolToObject(o, "history_full", r->history_full);
	j_num(o, "count", r->new_dsts);
	size_t n;
	const struct audit_report_row **v = audit_report_sorted(&r->dsts, &n);
	cJSON *a = cJSON_AddArrayToObject(o, "destinations");
	for (size_t i = 0; i < n; i++) {
		if (!v[i]->is_new)
			continue;
		char *c = audit_report_utf8_clean(v[i]->k[0]);
		cJSON_AddItemToArray(a, cJSON_CreateString(c));
		free(c);
	}
	free(v);
	return o;
}

static cJSON *j_limits(const struct audit_report *r)
{
	cJSON *o = cJSON_CreateObject();
	j_num(o, "max_keys", r->opt.max_keys);
	j_num(o, "top", r->opt.top);
	j_num(o, "events_kept", AUDIT_REPORT_EVENTS);
	j_num(o, "open_connections", AUDIT_REPORT_MAX_OPEN);
	j_num(o, "open_connections_dropped", r->conns.dropped);
	return o;
}

bool audit_report_write_json(const struct audit_report *r, FILE *out,
			     char *const *inputs, int n_inputs)
{
	bool f = false;	/* "report" is the first member */
	bool ok = fputs("{\"report\":1", out) >= 0;
	ok = ok && j_put(out, &f, "period", j_head(r, inputs, n_inputs));
	ok = ok && j_put(out, &f, "totals", j_totals(r));
	ok = ok && j_put(out, &f, "chain", j_chain_lifecycle(r, true));
	ok = ok && j_put(out, &f, "lifecycle", j_chain_lifecycle(r, false));
	ok = ok && j_put(out, &f, "timeline", j_timeline(r));
	ok = ok && j_table(out, &f, "users_destinations", &r->pairs, ROW_PAIR);
	ok = ok && j_table(out, &f, "denied", &r->denied, ROW_DENIED);
	ok = ok && j_table(out, &f, "destinations", &r->dsts, ROW_DST);
	ok = ok && j_put(out, &f, "new_destinations", j_new(r));
	ok = ok && j_put(out, &f, "busiest", j_conns(&r->busiest));
	ok = ok && j_put(out, &f, "longest", j_conns(&r->longest));
	ok = ok && j_table(out, &f, "users", &r->users, ROW_COUNT);
	ok = ok && j_table(out, &f, "clients", &r->clients, ROW_COUNT);
	ok = ok && j_table(out, &f, "ends", &r->ends, ROW_COUNT);
	ok = ok && j_table(out, &f, "unknown_types", &r->types, ROW_COUNT);
	ok = ok && j_put(out, &f, "limits", j_limits(r));
	return ok && fputs("}\n", out) >= 0 && !ferror(out);
}
