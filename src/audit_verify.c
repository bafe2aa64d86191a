/*
 * audit_verify: `tailfence audit verify` (and `audit report --key`): checks
 * the HMAC chain of a trail fed line by line, across files, and reports the
 * first broken link in words for people (docs/audit.md, "tailfence audit
 * verify"). The MACs themselves are audit_chain.c's.
 */
#include "audit_internal.h"

#include "tailfence/audit_read.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct audit_verify {
	struct audit_mac_key key;
	bool broken, done;
	char msg[1024];
	uint64_t records;

	bool have_prev;
	uint64_t prev_seq;
	unsigned char prev_mac[AUDIT_MAC_LEN];
	char prev_where[300];	/* "file:line" of the previous record */
	bool prev_checkpoint;
	char prev_reason[32];
	bool anchored_midway;	/* first record links to a file not given */
	uint64_t first_seq;
	unsigned restarts;	/* new chains after a clean shutdown */
	bool strict;		/* an unclean shutdown breaks the verification */
	unsigned unclean;	/* starts without a shutdown checkpoint before them */
	char unclean_where[300];	/* the first such start */
	char unclean_prev[300];		/* and the record before it */
	bool prev_has_ts;
	int64_t prev_ts;

	/* a problem that the next line decides */
	enum { PEND_NONE, PEND_GAP, PEND_MAC } pend;
	char pend_where[300];
	uint64_t pend_expected, pend_found;
	unsigned char pend_mac[AUDIT_MAC_LEN];	/* the failing line's written MAC */
	bool pend_first;
};

struct audit_verify *audit_verify_new(const unsigned char *key, size_t keylen)
{
	struct audit_verify *v = calloc(1, sizeof *v);
	if (!v)
		return NULL;
	if (!audit_mac_key_init(&v->key, key, keylen)) {
		free(v);
		return NULL;
	}
	return v;
}

void audit_verify_free(struct audit_verify *v)
{
	if (!v)
		return;
	audit_mac_key_clear(&v->key);
	free(v);
}

uint64_t audit_verify_records(const struct audit_verify *v)
{
	return v->records;
}

void audit_verify_set_strict(struct audit_verify *v, bool strict)
{
	v->strict = strict;
}

unsigned audit_verify_unclean(const struct audit_verify *v)
{
	return v->unclean;
}

__attribute__((format(printf, 2, 3)))
static bool vbreak(struct audit_verify *v, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->msg, sizeof v->msg, fmt, ap);
	va_end(ap);
	v->broken = true;
	return false;
}

static bool mac_ok(struct audit_verify *v, const unsigned char prev[AUDIT_MAC_LEN],
		   const struct audit_buf *b, const unsigned char mac[AUDIT_MAC_LEN])
{
	unsigned char calc[AUDIT_MAC_LEN];
	if (!audit_mac_compute(&v->key, prev, b->p, b->len, calc))
		return false;
	return CRYPTO_memcmp(calc, mac, AUDIT_MAC_LEN) == 0;
}

bool audit_verify_line(struct audit_verify *v, const char *file,
		       unsigned long lineno, const char *line, size_t len,
		       bool terminated)
{
	if (v->broken || v->done)
		return false;
	char where[300];
	snprintf(where, sizeof where, "%s:%lu", file, lineno);
	if (!terminated)
		return vbreak(v, "%s: truncated tail: the last line is a partial record (no newline)%s",
			      where, v->pend == PEND_GAP ? "; and a seq gap before it" : "");

	struct audit_buf b = { 0 };
	unsigned char mac[AUDIT_MAC_LEN];
	bool has_mac = audit_chain_split_mac(line, len, &b, mac);
	cJSON *o = cJSON_ParseWithLength(line, len);
	bool ok = false;
	if (!o) {
		vbreak(v, "%s: not a JSON record (edited or corrupted line)", where);
		goto out;
	}
	if (!has_mac) {
		vbreak(v, "%s: record has no MAC (an unsigned line was inserted or edited)", where);
		goto out;
	}
	cJSON *jseq = cJSON_GetObjectItemCaseSensitive(o, "seq");
	cJSON *jtype = cJSON_GetObjectItemCaseSensitive(o, "type");
	cJSON *jkid = cJSON_GetObjectItemCaseSensitive(o, "key_id");
	cJSON *jprev = cJSON_GetObjectItemCaseSensitive(o, "prev");
	cJSON *jreason = cJSON_GetObjectItemCaseSensitive(o, "reason");
	if (!cJSON_IsNumber(jseq) || jseq->valuedouble < 0 ||
	    jseq->valuedouble > 9007199254740992.0 ||
	    jseq->valuedouble != (double)(uint64_t)jseq->valuedouble) {
		vbreak(v, "%s: record has no valid \"seq\" (edited line)", where);
		goto out;
	}
	uint64_t seq = (uint64_t)jseq->valuedouble;
	unsigned char linkmac[AUDIT_MAC_LEN];
	bool has_link = cJSON_IsString(jprev) && strlen(jprev->valuestring) == 2 * AUDIT_MAC_LEN &&
			audit_hex_decode(jprev->valuestring, AUDIT_MAC_LEN, linkmac);
	if (jprev && !has_link) {
		vbreak(v, "%s: record has a malformed \"prev\" (edited line)", where);
		goto out;
	}
	bool clean_before = v->prev_checkpoint && strcmp(v->prev_reason, "shutdown") == 0;

	/* Decide a pending problem with this line's help. */
	if (v->pend == PEND_GAP) {
		if (seq == v->pend_expected)
			vbreak(v, "%s: reordered lines: seq %llu comes before seq %llu (%s)",
			       v->pend_where, (unsigned long long)v->pend_found,
			       (unsigned long long)seq, where);
		else
			vbreak(v, "%s: deleted record(s): seq jumps from %llu to %llu (%llu missing before this line)",
			       v->pend_where, (unsigned long long)v->pend_expected - 1,
			       (unsigned long long)v->pend_found,
			       (unsigned long long)(v->pend_found - v->pend_expected));
		goto out;
	}
	if (v->pend == PEND_MAC) {
		if (mac_ok(v, v->pend_mac, &b, mac))
			vbreak(v, "%s: edited record: its content does not match its MAC (a field was changed)",
			       v->pend_where);
		else if (v->pend_first)
			vbreak(v, "%s: MACs do not match this key from the first record on: the file was signed with another key",
			       v->pend_where);
		else
			vbreak(v, "%s: MACs stop matching from this record on: records signed with another key were spliced in, or several records were edited",
			       v->pend_where);
		goto out;
	}

	const unsigned char *prev = NULL;
	static const unsigned char zero[AUDIT_MAC_LEN];
	cJSON *jts = cJSON_GetObjectItemCaseSensitive(o, "ts");
	int64_t ts = 0;
	bool has_ts = cJSON_IsString(jts) &&
		      audit_read_time_parse(jts->valuestring, strlen(jts->valuestring), &ts);
	if (!v->have_prev) {
		v->first_seq = seq;
		if (seq == 0) {
			prev = zero;
		} else if (has_link) {
			prev = linkmac;
			v->anchored_midway = true;
		} else {
			vbreak(v, "%s: deleted record(s) at the head: the first record has seq %llu and no link (\"prev\") to an earlier file",
			       where, (unsigned long long)seq);
			goto out;
		}
	} else if (seq == 0) {
		if (!(v->prev_checkpoint && strcmp(v->prev_reason, "shutdown") == 0)) {
			vbreak(v, "%s: the chain restarts at seq 0 but %s is not a shutdown checkpoint: records in between were lost (crash or deletion) or a file was inserted",
			       where, v->prev_where);
			goto out;
		}
		if (has_ts && v->prev_has_ts && ts < v->prev_ts) {
			vbreak(v, "%s: files given out of order: a new chain starts here with a time earlier than %s",
			       where, v->prev_where);
			goto out;
		}
		v->restarts++;
		prev = zero;
	} else if (seq <= v->prev_seq) {
		vbreak(v, "%s: reordered or duplicated lines: seq %llu follows seq %llu (%s)",
		       where, (unsigned long long)seq, (unsigned long long)v->prev_seq,
		       v->prev_where);
		goto out;
	} else if (seq > v->prev_seq + 1) {
		v->pend = PEND_GAP;
		snprintf(v->pend_where, sizeof v->pend_where, "%s", where);
		v->pend_expected = v->prev_seq + 1;
		v->pend_found = seq;
		ok = true;
		goto out;
	} else {
		if (has_link && CRYPTO_memcmp(linkmac, v->prev_mac, AUDIT_MAC_LEN) != 0) {
			vbreak(v, "%s: broken link: \"prev\" does not match the MAC of %s (files given out of order, or one is missing or replaced)",
			       where, v->prev_where);
			goto out;
		}
		prev = v->prev_mac;
	}

	if (cJSON_IsString(jkid) && strcmp(jkid->valuestring, v->key.id) != 0 &&
	    (!prev || !mac_ok(v, prev, &b, mac))) {
		vbreak(v, "%s: signed with another key (key_id %s; this key's id is %s)",
		       where, jkid->valuestring, v->key.id);
		goto out;
	}
	if (prev && !mac_ok(v, prev, &b, mac)) {
		v->pend = PEND_MAC;
		snprintf(v->pend_where, sizeof v->pend_where, "%s", where);
		memcpy(v->pend_mac, mac, AUDIT_MAC_LEN);
		v->pend_first = !v->have_prev;
		ok = true;
		goto out;
	}
	/* A daemon that was killed or crashed wrote no shutdown checkpoint:
	 * the next start (after its recovery record) shows that it happened. */
	if (v->have_prev && !clean_before && cJSON_IsString(jtype) &&
	    strcmp(jtype->valuestring, "start") == 0) {
		if (v->unclean++ == 0) {
			snprintf(v->unclean_where, sizeof v->unclean_where, "%s", where);
			snprintf(v->unclean_prev, sizeof v->unclean_prev, "%s", v->prev_where);
		}
		if (v->strict) {
			vbreak(v, "%s: unclean shutdown: the daemon started again with no shutdown checkpoint after %s (it was killed or crashed; records it still held may be missing)",
			       where, v->prev_where);
			goto out;
		}
	}
	v->have_prev = true;
	v->prev_has_ts = has_ts;
	v->prev_ts = ts;
	v->prev_seq = seq;
	memcpy(v->prev_mac, mac, AUDIT_MAC_LEN);
	snprintf(v->prev_where, sizeof v->prev_where, "%s", where);
	v->prev_checkpoint = cJSON_IsString(jtype) && strcmp(jtype->valuestring, "checkpoint") == 0;
	snprintf(v->prev_reason, sizeof v->prev_reason, "%s",
		 cJSON_IsString(jreason) ? jreason->valuestring : "");
	v->records++;
	ok = true;
out:
	cJSON_Delete(o);
	free(b.p);
	return ok;
}

bool audit_verify_finish(struct audit_verify *v, char *msg, size_t msglen)
{
	if (!v->broken && !v->done) {
		if (v->pend == PEND_GAP)
			vbreak(v, "%s: deleted record(s): seq jumps from %llu to %llu (%llu missing before this line)",
			       v->pend_where, (unsigned long long)v->pend_expected - 1,
			       (unsigned long long)v->pend_found,
			       (unsigned long long)(v->pend_found - v->pend_expected));
		else if (v->pend == PEND_MAC)
			vbreak(v, "%s: %s: its content does not match its MAC",
			       v->pend_where, v->pend_first ? "edited record or another key" : "edited record");
		else if (v->records == 0)
			vbreak(v, "no records to verify");
		else if (!v->prev_checkpoint)
			vbreak(v, "%s: truncated tail: the last record (seq %llu) is not a checkpoint: records after it were removed, or the daemon is still writing or did not shut down cleanly",
			       v->prev_where, (unsigned long long)v->prev_seq);
	}
	v->done = true;
	if (!v->broken) {
		char restarts[160] = "", unclean[512] = "";
		if (v->restarts)
			snprintf(restarts, sizeof restarts,
				 "; note: %u new chain(s) started after a clean shutdown (the daemon could not continue the previous file's chain)",
				 v->restarts);
		if (v->unclean == 1)
			snprintf(unclean, sizeof unclean,
				 "; note: unclean shutdown at %.150s (a start with no shutdown checkpoint before it: the run that ended at %.150s was killed or crashed)",
				 v->unclean_where, v->unclean_prev);
		else if (v->unclean > 1)
			snprintf(unclean, sizeof unclean,
				 "; note: %u unclean shutdowns, the first at %.150s (a start with no shutdown checkpoint before it)",
				 v->unclean, v->unclean_where);
		snprintf(v->msg, sizeof v->msg,
			 "verified: %llu records, seq %llu..%llu, ending with a %s checkpoint at %s%s%s%s",
			 (unsigned long long)v->records, (unsigned long long)v->first_seq,
			 (unsigned long long)v->prev_seq, v->prev_reason, v->prev_where,
			 v->anchored_midway ? "; note: the first record links to an earlier file that was not given" : "",
			 restarts, unclean);
	}
	if (msg && msglen)
		snprintf(msg, msglen, "%s", v->msg);
	return !v->broken;
}
