/*
 * audit_chain: the audit trail's HMAC-SHA256 chain (docs/audit.md,
 * "Tamper evidence"), shared by the writer, which signs every record, and
 * by `audit verify`, which checks them: key files, the key's public id, the
 * MAC over the previous MAC and the record, the "mac" suffix of a written
 * line, and resuming a file's chain where the last run left it.
 *
 * line = {"v":1,"seq":N[,"prev":"hex"],...REST} and
 * mac = HMAC-SHA256(key, prev_mac || line); the written line is the line with
 * its closing '}' replaced by ,"mac":"<64 hex>"} and a newline.
 */
#include "audit_internal.h"

#include "tailfence/log.h"
#include "tailfence/text.h"

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAC_SUFFIX_LEN (8 + 2 * AUDIT_MAC_LEN + 2)	/* ,"mac":"..."} */

/* -------------------------------------------------------------------- hex */

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool audit_hex_decode(const char *in, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		int h = hex_val((unsigned char)in[2 * i]);
		int l = hex_val((unsigned char)in[2 * i + 1]);
		if (h < 0 || l < 0)
			return false;
		out[i] = (unsigned char)(h << 4 | l);
	}
	return true;
}

/* ------------------------------------------------------------------- MACs */

/* HMAC-SHA256 over a || b: a copy of the keyed context, so that neither
 * OpenSSL's implementations (HMAC, SHA-256) are looked up nor the key is
 * set up again for every record. */
static bool hmac2(const struct audit_mac_key *k, const void *a, size_t alen,
		  const void *b, size_t blen, unsigned char out[AUDIT_MAC_LEN])
{
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(k->keyed);
	size_t outl = 0;
	bool ok = ctx && EVP_MAC_update(ctx, a, alen) &&
		  EVP_MAC_update(ctx, b, blen) &&
		  EVP_MAC_final(ctx, out, &outl, AUDIT_MAC_LEN) &&
		  outl == AUDIT_MAC_LEN;
	EVP_MAC_CTX_free(ctx);
	return ok;
}

/* Public identifier of a key: the first 8 bytes of HMAC(key, label), hex. */
static void key_id(const struct audit_mac_key *k, char out[17])
{
	static const char label[] = "tailfence audit key id";
	unsigned char m[AUDIT_MAC_LEN];
	if (!hmac2(k, label, sizeof label - 1, "", 0, m))
		memset(m, 0, sizeof m);
	hex_encode(m, 8, out);
}

bool audit_mac_key_init(struct audit_mac_key *k, const unsigned char *key, size_t keylen)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	k->keyed = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac);	/* the context holds its own reference */
	if (!k->keyed || !EVP_MAC_init(k->keyed, key, keylen, params)) {
		audit_mac_key_clear(k);
		return false;
	}
	key_id(k, k->id);
	return true;
}

void audit_mac_key_clear(struct audit_mac_key *k)
{
	EVP_MAC_CTX_free(k->keyed);	/* wipes the key it holds */
	k->keyed = NULL;
}

bool audit_mac_compute(const struct audit_mac_key *k, const unsigned char prev[AUDIT_MAC_LEN],
		       const void *body, size_t len, unsigned char out[AUDIT_MAC_LEN])
{
	return hmac2(k, prev, AUDIT_MAC_LEN, body, len, out);
}

bool audit_chain_split_mac(const char *line, size_t len, struct audit_buf *b,
			   unsigned char mac[AUDIT_MAC_LEN])
{
	if (len < MAC_SUFFIX_LEN + 2)
		return false;
	const char *suf = line + len - MAC_SUFFIX_LEN;
	if (memcmp(suf, ",\"mac\":\"", 8) != 0 || memcmp(line + len - 2, "\"}", 2) != 0 ||
	    !audit_hex_decode(suf + 8, AUDIT_MAC_LEN, mac))
		return false;
	b->len = 0;
	return audit_buf_add(b, line, len - MAC_SUFFIX_LEN) && audit_buf_add(b, "}", 1);
}

/* ------------------------------------------------------------------- keys */

bool audit_key_load(const char *path, unsigned char **key, size_t *keylen,
		    char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "audit.hmac_key_file: \"%s\": %s", path,
			 strerror(errno));
		return false;
	}
	unsigned char tmp[4096];
	size_t n = fread(tmp, 1, sizeof tmp, f);
	bool too_big = n == sizeof tmp && fgetc(f) != EOF;
	fclose(f);
	while (n > 0 && text_is_space((char)tmp[n - 1]))
		n--;
	if (too_big || n < 16) {
		snprintf(err, errlen,
			 "audit.hmac_key_file: \"%s\": key must be 16 to 4095 bytes "
			 "(try: head -c 32 /dev/urandom | base64 > %s)",
			 path, path);
		OPENSSL_cleanse(tmp, sizeof tmp);
		return false;
	}
	*key = malloc(n);
	if (!*key) {
		snprintf(err, errlen, "audit.hmac_key_file: out of memory");
		return false;
	}
	memcpy(*key, tmp, n);
	*keylen = n;
	OPENSSL_cleanse(tmp, sizeof tmp);
	return true;
}

/* ---------------------------------------------------------- writer's chain */

bool audit_chain_open(struct audit_chain *c, const char *key_file, char *err, size_t errlen)
{
	unsigned char *key;
	size_t keylen;
	if (!audit_key_load(key_file, &key, &keylen, err, errlen))
		return false;
	struct stat st;
	if (stat(key_file, &st) == 0 && (st.st_mode & 077))
		log_warn("audit.hmac_key_file: \"%s\" is readable by group or others (mode %03o); chmod 600 it",
			 key_file, (unsigned)(st.st_mode & 0777));
	bool ok = audit_mac_key_init(&c->key, key, keylen);
	OPENSSL_cleanse(key, keylen);
	free(key);
	if (!ok) {
		snprintf(err, errlen, "audit: cannot set up HMAC-SHA256 (out of memory, or "
			 "OpenSSL offers no HMAC)");
		return false;
	}
	c->on = true;
	return true;
}

void audit_chain_resume(struct audit_chain *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size == 0) {
		close(fd);
		return;
	}
	size_t want = st.st_size > 65536 ? 65536 : (size_t)st.st_size;
	char *p = malloc(want + 1);
	ssize_t n = p ? pread(fd, p, want, st.st_size - (off_t)want) : -1;
	close(fd);
	if (n <= 0) {
		free(p);
		return;
	}
	size_t len = (size_t)n;
	if (p[len - 1] != '\n') {
		/* A partial record (crash mid-write): start the next on a new
		 * line; the chain restarts and verify will show the damage. */
		int wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (wfd >= 0) {
			if (write(wfd, "\n", 1) < 0)
				log_warn("audit: %s: cannot terminate partial line: %s",
					 path, strerror(errno));
			close(wfd);
		}
		free(p);
		return;
	}
	len--;
	size_t start = len;
	while (start > 0 && p[start - 1] != '\n')
		start--;
	cJSON *o = cJSON_ParseWithLength(p + start, len - start);
	free(p);
	if (!o)
		return;
	cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
	cJSON *mac = cJSON_GetObjectItemCaseSensitive(o, "mac");
	if (cJSON_IsNumber(seq) && seq->valuedouble >= 0 && cJSON_IsString(mac) &&
	    strlen(mac->valuestring) == 2 * AUDIT_MAC_LEN &&
	    audit_hex_decode(mac->valuestring, AUDIT_MAC_LEN, c->prev)) {
		c->seq = (uint64_t)seq->valuedouble + 1;
		c->have_prev = true;
		c->link_next = true;
	}
	cJSON_Delete(o);
}

bool audit_chain_sign(struct audit_chain *c, const char *line, size_t n, struct audit_buf *out)
{
	static const char head[] = "{\"v\":1,";
	char pre[160];
	int pl;
	if (n < sizeof head || memcmp(line, head, sizeof head - 1) != 0)
		return false;	/* never happens: every record starts with "v":1 */
	if (c->link_next && c->have_prev) {
		char hx[2 * AUDIT_MAC_LEN + 1];
		hex_encode(c->prev, AUDIT_MAC_LEN, hx);
		pl = snprintf(pre, sizeof pre, "{\"v\":1,\"seq\":%llu,\"prev\":\"%s\",",
			      (unsigned long long)c->seq, hx);
	} else {
		pl = snprintf(pre, sizeof pre, "{\"v\":1,\"seq\":%llu,",
			      (unsigned long long)c->seq);
	}
	/* body = pre + rest of the line without its '\n' */
	if (!audit_buf_add(out, pre, (size_t)pl) ||
	    !audit_buf_add(out, line + sizeof head - 1, n - (sizeof head - 1) - 1) ||
	    !audit_buf_reserve(out, MAC_SUFFIX_LEN + 1))
		return false;
	unsigned char mac[AUDIT_MAC_LEN];
	static const unsigned char zero[AUDIT_MAC_LEN];
	audit_mac_compute(&c->key, c->have_prev ? c->prev : zero, out->p, out->len, mac);
	char hx[2 * AUDIT_MAC_LEN + 1];
	hex_encode(mac, AUDIT_MAC_LEN, hx);
	out->len--;	/* drop the closing '}' */
	audit_buf_add(out, ",\"mac\":\"", 8);
	audit_buf_add(out, hx, 2 * AUDIT_MAC_LEN);
	audit_buf_add(out, "\"}\n", 3);
	memcpy(c->prev, mac, AUDIT_MAC_LEN);
	c->have_prev = true;
	c->link_next = false;
	c->seq++;
	return true;
}

void audit_chain_close(struct audit_chain *c)
{
	audit_mac_key_clear(&c->key);
	c->on = false;
}
