/*
 * whois: tailscaled's answer to "who is this tailnet address", parsed
 * (pure) and asked on the event loop (see include/tailfence/whois.h).
 */
#include "tailfence/whois.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tailfence/localapi.h"
#include "tailfence/text.h"

/* An answer is a few kilobytes (the node's Hostinfo); anything this long
 * is not one. */
#define WHOIS_MAX_BODY (256u << 10)

/* Copies a JSON string into out; false (with why) when it is not a string
 * (when required), holds a control character or does not fit. */
static bool take(const cJSON *o, const char *key, bool required, char *out, size_t cap,
		 const char *what, char *why, size_t whylen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	out[0] = '\0';
	if (!v || cJSON_IsNull(v)) {
		if (required) {
			snprintf(why, whylen, "whois answer has no %s", what);
			return false;
		}
		return true;
	}
	if (!cJSON_IsString(v) || !v->valuestring) {
		snprintf(why, whylen, "whois answer's %s is not a string", what);
		return false;
	}
	size_t n = strlen(v->valuestring);
	if (n >= cap) {
		snprintf(why, whylen, "whois answer's %s is %zu bytes long; at most %zu are "
			 "accepted", what, n, cap - 1);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (text_is_ctl(v->valuestring[i])) {
			snprintf(why, whylen, "whois answer's %s holds a control character", what);
			return false;
		}
	if (required && n == 0) {
		snprintf(why, whylen, "whois answer's %s is empty", what);
		return false;
	}
	memcpy(out, v->valuestring, n + 1);
	return true;
}

bool whois_parse(const char *body, size_t len, struct whois_identity *id, char *why,
		 size_t whylen)
{
	memset(id, 0, sizeof *id);
	cJSON *root = cJSON_ParseWithLength(body, len);
	bool ok = false;
	if (!root || !cJSON_IsObject(root)) {
		snprintf(why, whylen, "whois answer is not a JSON object");
		goto out;
	}
	const cJSON *node = cJSON_GetObjectItemCaseSensitive(root, "Node");
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(root, "UserProfile");
	if (!cJSON_IsObject(node) || !cJSON_IsObject(user)) {
		snprintf(why, whylen, "whois answer has no %s", cJSON_IsObject(node) ? "UserProfile"
						     : "Node");
		goto out;
	}
	if (!take(node, "Name", true, id->node, sizeof id->node, "node name", why, whylen) ||
	    !take(node, "StableID", false, id->node_id, sizeof id->node_id, "node id", why,
		  whylen) ||
	    !take(node, "ComputedName", false, id->node_short, sizeof id->node_short,
		  "computed node name", why, whylen) ||
	    !take(user, "LoginName", true, id->user, sizeof id->user, "login name", why, whylen) ||
	    !take(user, "DisplayName", false, id->display, sizeof id->display, "display name", why,
		  whylen))
		goto out;
	size_t nl = strlen(id->node);
	if (nl && id->node[nl - 1] == '.')
		id->node[--nl] = '\0';
	if (!nl) {
		snprintf(why, whylen, "whois answer's node name is empty");
		goto out;
	}
	if (!id->node_short[0]) {
		const char *dot = strchr(id->node, '.');
		size_t n = dot ? (size_t)(dot - id->node) : nl;
		if (n >= sizeof id->node_short)
			n = sizeof id->node_short - 1;
		memcpy(id->node_short, id->node, n);
		id->node_short[n] = '\0';
	}
	const cJSON *hi = cJSON_GetObjectItemCaseSensitive(node, "Hostinfo");
	if (cJSON_IsObject(hi) &&
	    !take(hi, "Hostname", false, id->host_name, sizeof id->host_name, "host name", why,
		  whylen))
		goto out;

	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(node, "Tags");
	if (tags && !cJSON_IsNull(tags)) {
		if (!cJSON_IsArray(tags)) {
			snprintf(why, whylen, "whois answer's tags are not a list");
			goto out;
		}
		for (const cJSON *t = tags->child; t; t = t->next) {
			if (id->n_tags == WHOIS_MAX_TAGS) {
				snprintf(why, whylen, "whois answer has more than %d tags",
					 WHOIS_MAX_TAGS);
				goto out;
			}
			const char *s = cJSON_GetStringValue(t);
			size_t n = s ? strlen(s) : 0;
			if (!s || n < 5 || strncmp(s, "tag:", 4) != 0 || n >= sizeof id->tags[0]) {
				snprintf(why, whylen, "whois answer has a tag that is not \"tag:NAME\" "
					 "of at most %zu bytes", sizeof id->tags[0] - 1);
				goto out;
			}
			for (size_t i = 0; i < n; i++)
				if (text_is_ctl(s[i])) {
					snprintf(why, whylen, "whois answer has a tag with a control "
						 "character");
					goto out;
				}
			memcpy(id->tags[id->n_tags++], s, n + 1);
		}
	}
	const cJSON *caps = cJSON_GetObjectItemCaseSensitive(root, "CapMap");
	if (caps && !cJSON_IsNull(caps)) {
		if (!cJSON_IsObject(caps)) {
			snprintf(why, whylen, "whois answer's CapMap is not an object");
			goto out;
		}
		for (const cJSON *c = caps->child; c; c = c->next) {
			size_t n = strlen(c->string);
			if (id->n_caps == WHOIS_MAX_CAPS) {
				snprintf(why, whylen, "whois answer has more than %d capabilities",
					 WHOIS_MAX_CAPS);
				goto out;
			}
			if (n == 0 || n >= sizeof id->caps[0]) {
				snprintf(why, whylen, "whois answer has a capability name of %zu bytes; "
					 "1 to %zu are accepted", n, sizeof id->caps[0] - 1);
				goto out;
			}
			for (size_t i = 0; i < n; i++)
				if (text_is_ctl(c->string[i])) {
					snprintf(why, whylen, "whois answer has a capability name with a "
						 "control character");
					goto out;
				}
			memcpy(id->caps[id->n_caps++], c->string, n + 1);
		}
	}
	ok = true;
out:
	cJSON_Delete(root);
	if (!ok)
		memset(id, 0, sizeof *id);
	return ok;
}

void whois_addr_param(const struct cidr_addr *a, uint16_t port, char *buf, size_t len)
{
	char hp[CIDR_ADDR_STRLEN + 8];
	cidr_addr_format_port(a, port, hp, sizeof hp);
	size_t j = 0;
	for (size_t i = 0; hp[i] && j + 4 < len; i++) {
		char c = hp[i];
		if (c == '[' || c == ']' || c == ':')
			j += (size_t)snprintf(buf + j, len - j, "%%%02X", (unsigned char)c);
		else
			buf[j++] = c;
	}
	buf[j] = '\0';
}

/* ------------------------------------------------------------ the request */

struct whois_req {
	struct localapi_req *req;
	whois_cb cb;
	void *arg;
	char addr[CIDR_ADDR_STRLEN];
	char sock[256];
};

static void whois_done(void *arg, int status, const char *body, size_t len, const char *error)
{
	struct whois_req *q = arg;
	struct whois_identity id;
	char why[400];
	q->req = NULL;
	if (error) {
		q->cb(q->arg, NULL, error);
	} else if (status == 404) {
		snprintf(why, sizeof why, "tailscaled knows no tailnet node at %s", q->addr);
		q->cb(q->arg, NULL, why);
	} else if (status == 403) {
		snprintf(why, sizeof why, "tailscaled at %s refused whois (it needs read access "
			 "to the LocalAPI)", q->sock);
		q->cb(q->arg, NULL, why);
	} else if (status < 200 || status > 299) {
		size_t n = 0;
		while (n < len && n < 120 && body[n] != '\n' && !text_is_ctl(body[n]))
			n++;
		snprintf(why, sizeof why, "tailscaled answered whois with HTTP %d: %.*s", status,
			 (int)n, body);
		q->cb(q->arg, NULL, why);
	} else if (!whois_parse(body, len, &id, why, sizeof why)) {
		q->cb(q->arg, NULL, why);
	} else {
		q->cb(q->arg, &id, NULL);
	}
	free(q);
}

struct whois_req *whois_query(struct event_base *base, const char *sock_path,
			      const struct cidr_addr *addr, uint16_t port, unsigned timeout_ms,
			      whois_cb cb, void *arg)
{
	struct whois_req *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->cb = cb;
	q->arg = arg;
	cidr_addr_format(addr, q->addr, sizeof q->addr);
	snprintf(q->sock, sizeof q->sock, "%s", sock_path);
	char param[96], path[160];
	whois_addr_param(addr, port, param, sizeof param);
	snprintf(path, sizeof path, "/localapi/v0/whois?addr=%s", param);
	q->req = localapi_get(base, sock_path, path, timeout_ms, WHOIS_MAX_BODY, whois_done, q);
	if (!q->req) {
		free(q);
		return NULL;
	}
	return q;
}

void whois_cancel(struct whois_req *q)
{
	if (!q)
		return;
	localapi_cancel(q->req);
	free(q);
}
