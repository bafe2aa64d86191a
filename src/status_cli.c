/*
 * status_cli: `tailfence status [--json] [FLAGS]`, what the fence follows.
 *
 * Reads the tailnet from tailscaled the way the daemon does (the same
 * socket, options and view code): backend state, this node, every peer
 * with its addresses and the routes it carries or only offers, the carried
 * set, the split-DNS domains; and the last change the daemon recorded,
 * from the newest "tailnet" record in its audit file (when it writes one).
 * Exit status: 0 when the tailnet is running, 1 when it is not (or no
 * socket is configured), 2 on a usage or configuration error.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tailfence/cli.h"
#include "tailfence/config.h"
#include "tailfence/tailnet.h"
#include "tailfence/tailnet_watch.h"

/* How far back in the audit file the last tailnet record is looked for. */
#define STATUS_TAIL_BYTES (4u << 20)

/* The newest `"type":"tailnet"` record in the tail of path, parsed; NULL
 * when there is none (or the file cannot be read). */
static cJSON *status_last_change(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || st.st_size <= 0) {
		close(fd);
		return NULL;
	}
	off_t from = st.st_size > (off_t)STATUS_TAIL_BYTES ? st.st_size - STATUS_TAIL_BYTES : 0;
	size_t len = (size_t)(st.st_size - from);
	char *buf = malloc(len + 1);
	ssize_t got = buf ? pread(fd, buf, len, from) : -1;
	close(fd);
	if (got <= 0) {
		free(buf);
		return NULL;
	}
	buf[got] = '\0';
	cJSON *found = NULL;
	/* Backwards from the end, line by line. */
	for (char *end = buf + got; end > buf && !found;) {
		char *start = end;
		while (start > buf && start[-1] != '\n')
			start--;
		if (strstr(start, "\"type\":\"tailnet\"")) {
			cJSON *j = cJSON_ParseWithLength(start, (size_t)(end - start));
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
			if (cJSON_IsString(t) && strcmp(t->valuestring, "tailnet") == 0)
				found = j;
			else
				cJSON_Delete(j);
		}
		end = start > buf ? start - 1 : buf;
	}
	free(buf);
	return found;
}

static cJSON *status_addrs_json(const struct cidr_addr *v, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	char buf[CIDR_ADDR_STRLEN];
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(cidr_addr_format(&v[i], buf, sizeof buf)));
	return a;
}

static cJSON *status_prefixes_json(const struct cidr_prefix *v, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	char buf[CIDR_PREFIX_STRLEN];
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(cidr_prefix_format(&v[i], buf, sizeof buf)));
	return a;
}

static cJSON *status_json(const struct config *c, const struct tailnet_view *v, cJSON *last)
{
	cJSON *o = cJSON_CreateObject();
	char buf[CIDR_PREFIX_STRLEN];
	cJSON_AddStringToObject(o, "state", tailnet_state_str(v->state));
	v->reason ? cJSON_AddStringToObject(o, "reason", v->reason) : cJSON_AddNullToObject(o, "reason");
	cJSON_AddStringToObject(o, "socket", c->tailscaled_socket ? c->tailscaled_socket : "none");
	v->backend_state ? cJSON_AddStringToObject(o, "backend_state", v->backend_state)
			 : cJSON_AddNullToObject(o, "backend_state");
	cJSON *self = cJSON_AddObjectToObject(o, "self");
	v->self_name ? cJSON_AddStringToObject(self, "name", v->self_name)
		     : cJSON_AddNullToObject(self, "name");
	cJSON_AddItemToObject(self, "addrs", status_addrs_json(v->self_addrs, v->n_self_addrs));
	cJSON_AddBoolToObject(o, "accept_routes", v->route_all);
	cJSON *peers = cJSON_AddArrayToObject(o, "peers");
	for (size_t i = 0; i < v->n_peers; i++) {
		const struct tailnet_peer *p = &v->peers[i];
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", p->name);
		cJSON_AddStringToObject(e, "id", p->id);
		cJSON_AddStringToObject(e, "host_name", p->host_name);
		cJSON_AddBoolToObject(e, "online", p->online);
		cJSON_AddBoolToObject(e, "exit_node", p->exit_node);
		cJSON_AddItemToObject(e, "addrs", status_addrs_json(p->addrs, p->n_addrs));
		cJSON_AddItemToObject(e, "routes", status_prefixes_json(p->routes, p->n_routes));
		cJSON_AddItemToObject(e, "offered", status_prefixes_json(p->offered, p->n_offered));
		cJSON_AddItemToArray(peers, e);
	}
	cJSON *carried = cJSON_AddArrayToObject(o, "carried");
	for (size_t i = 0; v->state == TAILNET_RUNNING && i < v->n_entries; i++) {
		const struct tailnet_entry *en = &v->entries[i];
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "prefix", cidr_prefix_format(&en->prefix, buf, sizeof buf));
		cJSON_AddStringToObject(e, "peer", v->peers[en->peer].name);
		cJSON_AddStringToObject(e, "kind", tailnet_carry_str(en->kind));
		cJSON_AddItemToArray(carried, e);
	}
	cJSON *split = cJSON_AddArrayToObject(o, "split_dns");
	for (size_t i = 0; i < v->n_split_domains; i++)
		cJSON_AddItemToArray(split, cJSON_CreateString(v->split_domains[i]));
	if (last)
		cJSON_AddItemToObject(o, "last_change", cJSON_Duplicate(last, true));
	else
		cJSON_AddNullToObject(o, "last_change");
	return o;
}

static void status_print_prefixes(const char *label, const struct cidr_prefix *v, size_t n)
{
	char buf[CIDR_PREFIX_STRLEN];
	if (!n)
		return;
	printf("      %s:", label);
	for (size_t i = 0; i < n; i++)
		printf("%s %s", i ? "," : "", cidr_prefix_format(&v[i], buf, sizeof buf));
	printf("\n");
}

static void status_print_addrs(const struct cidr_addr *v, size_t n)
{
	char buf[CIDR_ADDR_STRLEN];
	for (size_t i = 0; i < n; i++)
		printf(" %s", cidr_addr_format(&v[i], buf, sizeof buf));
}

/* "+192.0.2.0/24 (b.tailnet.test route)" for each entry of a change list. */
static void status_print_changes(const cJSON *list, char sign)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, list) {
		const cJSON *pf = cJSON_GetObjectItemCaseSensitive(e, "prefix");
		const cJSON *peer = cJSON_GetObjectItemCaseSensitive(e, "peer");
		const cJSON *kind = cJSON_GetObjectItemCaseSensitive(e, "kind");
		printf("  %c%s (%s %s)\n", sign, cJSON_IsString(pf) ? pf->valuestring : "?",
		       cJSON_IsString(peer) ? peer->valuestring : "?",
		       cJSON_IsString(kind) ? kind->valuestring : "?");
	}
}

static void status_print(const struct config *c, const struct tailnet_view *v,
			 const cJSON *last, const char *audit_file)
{
	char buf[CIDR_PREFIX_STRLEN];
	printf("tailnet: %s", tailnet_state_str(v->state));
	if (v->backend_state)
		printf(" (backend %s)", v->backend_state);
	printf(", tailscaled at %s\n", c->tailscaled_socket);
	if (v->reason)
		printf("reason: %s\n", v->reason);
	if (v->state == TAILNET_UNKNOWN)
		return;
	printf("self: %s", v->self_name ? v->self_name : "?");
	status_print_addrs(v->self_addrs, v->n_self_addrs);
	printf("\naccepts routes: %s\n", v->route_all ? "yes" : "no (peers' subnet routes are "
						       "not carried; tailscale set --accept-routes)");
	printf("peers: %zu\n", v->n_peers);
	for (size_t i = 0; i < v->n_peers; i++) {
		const struct tailnet_peer *p = &v->peers[i];
		printf("  %s (%s) %s%s\n     ", p->name, p->id[0] ? p->id : "?",
		       p->online ? "online" : "offline", p->exit_node ? ", the exit node" : "");
		status_print_addrs(p->addrs, p->n_addrs);
		printf("\n");
		status_print_prefixes("routes carried", p->routes, p->n_routes);
		status_print_prefixes("routes offered, not carried", p->offered, p->n_offered);
	}
	size_t n = v->state == TAILNET_RUNNING ? v->n_entries : 0;
	printf("carried: %zu prefixes\n", n);
	for (size_t i = 0; i < n; i++) {
		const struct tailnet_entry *e = &v->entries[i];
		printf("  %-43s %s (%s)\n", cidr_prefix_format(&e->prefix, buf, sizeof buf),
		       v->peers[e->peer].name, tailnet_carry_str(e->kind));
	}
	if (v->n_split_domains) {
		printf("split DNS (through tailscaled):");
		for (size_t i = 0; i < v->n_split_domains; i++)
			printf(" %s", v->split_domains[i]);
		printf("\n");
	}
	if (last) {
		const cJSON *ts = cJSON_GetObjectItemCaseSensitive(last, "ts");
		const cJSON *state = cJSON_GetObjectItemCaseSensitive(last, "state");
		printf("last change the daemon recorded: %s, %s\n",
		       cJSON_IsString(ts) ? ts->valuestring : "?",
		       cJSON_IsString(state) ? state->valuestring : "?");
		status_print_changes(cJSON_GetObjectItemCaseSensitive(last, "added"), '+');
		status_print_changes(cJSON_GetObjectItemCaseSensitive(last, "removed"), '-');
	} else {
		printf("last change the daemon recorded: %s\n",
		       audit_file ? "none in its audit file" : "not known (no audit file configured)");
	}
}

int status_cli_main(int argc, char **argv)
{
	bool json = false;
	int keep = 1;
	/* --json is ours; everything else is the daemon's flags. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[keep++] = argv[i];
	}
	argc = keep;
	static const struct config_command cmd = {
		.name = "tailfence status",
		.usage = "usage: tailfence status [--json] [FLAGS]",
		.about = "What the fence follows: the tailnet as tailscaled reports it (this node,\n"
			 "the peers and their routes, what is allowed) and the last change the\n"
			 "daemon recorded in its audit file.",
		.options = "  --json                    print the same as one JSON object\n",
	};
	struct config_args *args;
	int rc = config_args_parse_cmd(argc, argv, &cmd, &args);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	char err[1024];
	struct config *c = config_build(args, err, sizeof err);
	config_args_free(args);
	if (!c) {
		fprintf(stderr, "tailfence: %s\n", err);
		return 2;
	}
	if (!c->tailscaled_socket) {
		fprintf(json ? stderr : stdout, "tailnet: off (no tailscaled socket configured; the "
			"static routes decide)\n");
		config_unref(c);
		return 1;
	}
	struct tailnet_options opt = { .allow_exit_node = c->allow_default_route };
	struct tailnet_view *v = tailnet_view_fetch(c->tailscaled_socket, &opt);
	const char *audit_file = NULL;
	for (size_t i = 0; i < c->audit.n_sinks && !audit_file; i++)
		if (c->audit.sinks[i].kind == AUDIT_SINK_FILE)
			audit_file = c->audit.sinks[i].path;
	cJSON *last = audit_file ? status_last_change(audit_file) : NULL;
	if (!v) {
		fprintf(stderr, "tailfence status: out of memory\n");
		rc = 2;
	} else if (json) {
		cJSON *o = status_json(c, v, last);
		char *text = cJSON_Print(o);
		puts(text ? text : "null");
		free(text);
		cJSON_Delete(o);
	} else {
		status_print(c, v, last, audit_file);
	}
	if (v)
		rc = v->state == TAILNET_RUNNING ? 0 : 1;
	cJSON_Delete(last);
	tailnet_view_unref(v);
	config_unref(c);
	return rc;
}
