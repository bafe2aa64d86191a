/*
 * test_whois: tailscaled's whois answers, recorded (tailscaled v1.100.0 in
 * the test tailnet: node B of user "harness", node C of another user) and
 * made up, parsed into identities or refused with a reason.
 */
#include "tailfence/whois.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	CHECK(f != NULL, "open %s", path);
	if (!f)
		return NULL;
	char *buf = malloc(1 << 20);
	*len = fread(buf, 1, (1 << 20) - 1, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static void test_recorded(const char *dir)
{
	struct whois_identity id;
	char why[300];
	size_t len;
	char *b = slurp(dir, "tailscaled-a-whois-b.json", &len);
	if (b) {
		CHECK(whois_parse(b, len, &id, why, sizeof why), "whois b: %s", why);
		CHECK(strcmp(id.node, "tailnet-b.tailnet.test") == 0, "node %s", id.node);
		CHECK(strcmp(id.node_short, "tailnet-b") == 0, "short %s", id.node_short);
		CHECK(strcmp(id.host_name, "tailnet-b") == 0, "host %s", id.host_name);
		CHECK(strcmp(id.node_id, "1") == 0, "id %s", id.node_id);
		CHECK(strcmp(id.user, "harness") == 0, "user %s", id.user);
		CHECK(id.n_tags == 0 && id.n_caps == 0, "tags %zu caps %zu", id.n_tags, id.n_caps);
		free(b);
	}
	char *c = slurp(dir, "tailscaled-a-whois-c.json", &len);
	if (c) {
		CHECK(whois_parse(c, len, &id, why, sizeof why), "whois c: %s", why);
		CHECK(strcmp(id.node, "tailnet-c.tailnet.test") == 0, "node %s", id.node);
		CHECK(strcmp(id.user, "mallory@example.com") == 0, "user %s", id.user);
		CHECK(strcmp(id.display, "mallory@example.com") == 0, "display %s", id.display);
		free(c);
	}
}

static void test_table(void)
{
	static char long_name[400];
	memset(long_name, 'a', sizeof long_name - 1);
	char long_body[800];
	snprintf(long_body, sizeof long_body,
		 "{\"Node\":{\"Name\":\"x.\"},\"UserProfile\":{\"LoginName\":\"%s\"}}", long_name);
	static const char user_ok[] = "\"UserProfile\":{\"LoginName\":\"alice@example.com\","
				      "\"DisplayName\":\"Alice\"}";
	char buf[8][600];
	snprintf(buf[0], sizeof buf[0],
		 "{\"Node\":{\"Name\":\"ci-runner.example.ts.net.\",\"StableID\":\"nX1\","
		 "\"Tags\":[\"tag:ci\",\"tag:ops\"]},%s,\"CapMap\":{\"example.com/cap/db\":"
		 "[{\"ro\":true}],\"example.com/cap/x\":null}}", user_ok);
	snprintf(buf[1], sizeof buf[1], "{\"Node\":{\"Name\":\"n.\",\"Tags\":[\"ops\"]},%s}",
		 user_ok);
	snprintf(buf[2], sizeof buf[2], "{\"Node\":{\"Name\":\"n.\",\"Tags\":\"tag:ops\"},%s}",
		 user_ok);
	snprintf(buf[3], sizeof buf[3], "{\"Node\":{\"Name\":\"\"},%s}", user_ok);
	snprintf(buf[4], sizeof buf[4], "{\"Node\":{\"Name\":\"n\\u001b[31m.\"},%s}", user_ok);
	snprintf(buf[5], sizeof buf[5], "{\"Node\":{\"Name\":\"laptop\",\"Tags\":null},%s,"
		 "\"CapMap\":null}", user_ok);
	snprintf(buf[6], sizeof buf[6], "{\"Node\":{\"Name\":\"n.\"},%s,\"CapMap\":[]}", user_ok);
	snprintf(buf[7], sizeof buf[7], "{\"Node\":{\"Name\":7},%s}", user_ok);

	const struct {
		const char *body;
		const char *why;	/* NULL: parses */
	} cases[] = {
		{ buf[0], NULL },
		{ buf[1], "not \"tag:NAME\"" },
		{ buf[2], "tags are not a list" },
		{ buf[3], "node name is empty" },
		{ buf[4], "control character" },
		{ buf[5], NULL },
		{ buf[6], "CapMap is not an object" },
		{ buf[7], "node name is not a string" },
		{ long_body, "login name is 399 bytes long" },
		{ "", "not a JSON object" },
		{ "[]", "not a JSON object" },
		{ "{\"UserProfile\":{\"LoginName\":\"a\"}}", "has no Node" },
		{ "{\"Node\":{\"Name\":\"n.\"}}", "has no UserProfile" },
		{ "{\"Node\":{\"Name\":\"n.\"},\"UserProfile\":{}}", "has no login name" },
		{ "{\"Node\":{\"Name\":\"n.\"},\"UserProfile\":{\"LoginName\":\"\"}}",
		  "login name is empty" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct whois_identity id;
		char why[300] = "";
		bool ok = whois_parse(cases[i].body, strlen(cases[i].body), &id, why, sizeof why);
		if (!cases[i].why)
			CHECK(ok, "case %zu: %s", i, why);
		else
			CHECK(!ok && strstr(why, cases[i].why), "case %zu: ok %d why \"%s\", want \"%s\"",
			      i, ok, why, cases[i].why);
	}
	struct whois_identity id;
	char why[300];
	CHECK(whois_parse(buf[0], strlen(buf[0]), &id, why, sizeof why), "%s", why);
	CHECK(strcmp(id.node, "ci-runner.example.ts.net") == 0 &&
	      strcmp(id.node_short, "ci-runner") == 0 && strcmp(id.node_id, "nX1") == 0,
	      "node %s short %s id %s", id.node, id.node_short, id.node_id);
	CHECK(id.n_tags == 2 && strcmp(id.tags[0], "tag:ci") == 0 && strcmp(id.tags[1], "tag:ops") == 0,
	      "tags");
	CHECK(id.n_caps == 2 && strcmp(id.caps[0], "example.com/cap/db") == 0, "caps");
	CHECK(strcmp(id.user, "alice@example.com") == 0 && strcmp(id.display, "Alice") == 0,
	      "user %s", id.user);
	CHECK(whois_parse(buf[5], strlen(buf[5]), &id, why, sizeof why) &&
	      strcmp(id.node_short, "laptop") == 0 && strcmp(id.node, "laptop") == 0,
	      "a name without dots: %s %s", id.node, id.node_short);

	/* Too many tags. */
	char many[4000];
	size_t j = (size_t)snprintf(many, sizeof many, "{\"Node\":{\"Name\":\"n.\",\"Tags\":[");
	for (int i = 0; i < WHOIS_MAX_TAGS + 1; i++)
		j += (size_t)snprintf(many + j, sizeof many - j, "%s\"tag:t%d\"", i ? "," : "", i);
	snprintf(many + j, sizeof many - j, "]},%s}", user_ok);
	CHECK(!whois_parse(many, strlen(many), &id, why, sizeof why) &&
	      strstr(why, "more than 32 tags"), "many tags: %s", why);
}

static void test_param(void)
{
	struct cidr_addr a;
	char buf[96];
	cidr_addr_parse("100.64.0.1", &a);
	whois_addr_param(&a, 443, buf, sizeof buf);
	CHECK(strcmp(buf, "100.64.0.1%3A443") == 0, "v4 param %s", buf);
	cidr_addr_parse("fd7a:115c:a1e0::1", &a);
	whois_addr_param(&a, 55211, buf, sizeof buf);
	CHECK(strcmp(buf, "%5Bfd7a%3A115c%3Aa1e0%3A%3A1%5D%3A55211") == 0, "v6 param %s", buf);
}

int main(int argc, char **argv)
{
	test_recorded(argc > 1 ? argv[1] : "tests/unit/data");
	test_table();
	test_param();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
