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

/* The verifier's outcome for one line: */
enum step {
	STEP_OK,	/* this check passed: go on to the next */
	STEP_HELD,	/* a problem that the next line decides (v->pend) */
	STEP_BROKEN,	/* the chain is broken here (v->msg says how) */
};

/* What the verifier reads of one line. */
struct vline {
	char where[300];		/* "file:line", for messages */
	struct audit_buf signed_bytes;	/* the line as its MAC covers it */
	unsigned char mac[AUDIT_MAC_LEN];	/* the MAC written on it */
	cJSON *o;
	uint64_t seq;
	bool has_link;			/* a "prev": the MAC it links to */
	unsigned char link[AUDIT_MAC_LEN];
	const char *type, *key_id, *reason;	/* NULL when missing */
	bool has_ts;
	int64_t ts;
};

static const char *str_field(const cJSON *o, const char *k)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* Was the last verified record a shutdown checkpoint? */
static bool after_shutdown(const struct audit_verify *v)
{
	return v->prev_checkpoint && strcmp(v->prev_reason, "shutdown") == 0;
}

static void break_on_gap(struct audit_verify *v)
{
	vbreak(v, "%s: deleted record(s): seq jumps from %llu to %llu (%llu missing before this line)",
	       v->pend_where, (unsigned long long)v->pend_expected - 1,
	       (unsigned long long)v->pend_found,
	       (unsigned long long)(v->pend_found - v->pend_expected));
}

/* 1. Split the MAC off the line and read the fields the verifier needs:
 * "seq", "prev", "type", "key_id", "reason", "ts". A line that is not
 * JSON, has no MAC, has no valid "seq" or a malformed "prev" breaks the
 * chain. */
static enum step read_line(struct audit_verify *v, struct vline *l, const char *line,
			   size_t len)
{
	bool has_mac = audit_chain_split_mac(line, len, &l->signed_bytes, l->mac);
	l->o = cJSON_ParseWithLength(line, len);
	if (!l->o) {
		vbreak(v, "%s: not a JSON record (edited or corrupted line)", l->where);
		return STEP_BROKEN;
	}
	if (!has_mac) {
		vbreak(v, "%s: record has no MAC (an unsigned line was inserted or edited)", l->where);
		return STEP_BROKEN;
	}
	cJSON *jseq = cJSON_GetObjectItemCaseSensitive(l->o, "seq");
	cJSON *jprev = cJSON_GetObjectItemCaseSensitive(l->o, "prev");
	if (!cJSON_IsNumber(jseq) || jseq->valuedouble < 0 ||
	    jseq->valuedouble > 9007199254740992.0 ||
	    jseq->valuedouble != (double)(uint64_t)jseq->valuedouble) {
		vbreak(v, "%s: record has no valid \"seq\" (edited line)", l->where);
		return STEP_BROKEN;
	}
	l->seq = (uint64_t)jseq->valuedouble;
	l->has_link = cJSON_IsString(jprev) &&
		      strlen(jprev->valuestring) == 2 * AUDIT_MAC_LEN &&
		      audit_hex_decode(jprev->valuestring, AUDIT_MAC_LEN, l->link);
	if (jprev && !l->has_link) {
		vbreak(v, "%s: record has a malformed \"prev\" (edited line)", l->where);
		return STEP_BROKEN;
	}
	l->type = str_field(l->o, "type");
	l->key_id = str_field(l->o, "key_id");
	l->reason = str_field(l->o, "reason");
	const char *ts = str_field(l->o, "ts");
	l->has_ts = ts && audit_read_time_parse(ts, strlen(ts), &l->ts);
	return STEP_OK;
}

/* 2. A problem held from the line before is decided with this line's help,
 * and breaks the chain either way. After a seq gap: this line's seq is the
 * missing one (lines were reordered) or not (records were deleted). After
 * a MAC that did not match: this line's MAC, computed over that line's
 * written MAC, matches (that one record was edited) or not (another key). */
static enum step decide_pending(struct audit_verify *v, const struct vline *l)
{
	if (v->pend == PEND_GAP) {
		if (l->seq == v->pend_expected)
			vbreak(v, "%s: reordered lines: seq %llu comes before seq %llu (%s)",
			       v->pend_where, (unsigned long long)v->pend_found,
			       (unsigned long long)l->seq, l->where);
		else
			break_on_gap(v);
	} else if (mac_ok(v, v->pend_mac, &l->signed_bytes, l->mac)) {
		vbreak(v, "%s: edited record: its content does not match its MAC (a field was changed)",
		       v->pend_where);
	} else if (v->pend_first) {
		vbreak(v, "%s: MACs do not match this key from the first record on: the file was signed with another key",
		       v->pend_where);
	} else {
		vbreak(v, "%s: MACs stop matching from this record on: records signed with another key were spliced in, or several records were edited",
		       v->pend_where);
	}
	return STEP_BROKEN;
}

/* Where a line sits in the chain (check_seq). */
enum place {
	PLACE_FIRST,	/* the first record given */
	PLACE_RESTART,	/* seq 0 after other records: a new chain */
	PLACE_NEXT,	/* seq one past the previous record's */
};

/* 3. Seq continuity: a new chain starts at seq 0; otherwise seq must be the
 * previous record's plus one. A seq at or below it breaks the chain (lines
 * reordered or duplicated); a seq above it is held as a gap that the next
 * line decides. */
static enum step check_seq(struct audit_verify *v, const struct vline *l, enum place *place)
{
	if (!v->have_prev) {
		*place = PLACE_FIRST;
	} else if (l->seq == 0) {
		*place = PLACE_RESTART;
	} else if (l->seq <= v->prev_seq) {
		vbreak(v, "%s: reordered or duplicated lines: seq %llu follows seq %llu (%s)",
		       l->where, (unsigned long long)l->seq, (unsigned long long)v->prev_seq,
		       v->prev_where);
		return STEP_BROKEN;
	} else if (l->seq > v->prev_seq + 1) {
		v->pend = PEND_GAP;
		snprintf(v->pend_where, sizeof v->pend_where, "%s", l->where);
		v->pend_expected = v->prev_seq + 1;
		v->pend_found = l->seq;
		return STEP_HELD;
	} else {
		*place = PLACE_NEXT;
	}
	return STEP_OK;
}

/* 4. The MAC this record was computed over (*prev): 32 zero bytes for
 * seq 0, else the previous record's MAC. The first record given may link
 * to an earlier file with "prev" (its MAC is then taken on trust); with
 * neither, the head was cut off. A new chain must follow a shutdown
 * checkpoint and must not be older than it (files out of order). The next
 * record's "prev", when it has one, must be the previous record's MAC. */
static enum step check_prev(struct audit_verify *v, const struct vline *l, enum place place,
			    const unsigned char **prev)
{
	static const unsigned char zero[AUDIT_MAC_LEN];
	switch (place) {
	case PLACE_FIRST:
		v->first_seq = l->seq;
		if (l->seq == 0) {
			*prev = zero;
		} else if (l->has_link) {
			*prev = l->link;
			v->anchored_midway = true;
		} else {
			vbreak(v, "%s: deleted record(s) at the head: the first record has seq %llu and no link (\"prev\") to an earlier file",
			       l->where, (unsigned long long)l->seq);
			return STEP_BROKEN;
		}
		break;
	case PLACE_RESTART:
		if (!after_shutdown(v)) {
			vbreak(v, "%s: the chain restarts at seq 0 but %s is not a shutdown checkpoint: records in between were lost (crash or deletion) or a file was inserted",
			       l->where, v->prev_where);
			return STEP_BROKEN;
		}
		if (l->has_ts && v->prev_has_ts && l->ts < v->prev_ts) {
			vbreak(v, "%s: files given out of order: a new chain starts here with a time earlier than %s",
			       l->where, v->prev_where);
			return STEP_BROKEN;
		}
		v->restarts++;
		*prev = zero;
		break;
	case PLACE_NEXT:
		if (l->has_link && CRYPTO_memcmp(l->link, v->prev_mac, AUDIT_MAC_LEN) != 0) {
			vbreak(v, "%s: broken link: \"prev\" does not match the MAC of %s (files given out of order, or one is missing or replaced)",
			       l->where, v->prev_where);
			return STEP_BROKEN;
		}
		*prev = v->prev_mac;
		break;
	}
	return STEP_OK;
}

/* 5. The MAC itself. A checkpoint that names another key's id, and whose
 * MAC does not match, breaks the chain at once; any other mismatch is held:
 * the next line tells an edited record from a change of key. */
static enum step check_mac(struct audit_verify *v, const struct vline *l,
			   const unsigned char *prev)
{
	bool good = mac_ok(v, prev, &l->signed_bytes, l->mac);
	if (!good && l->key_id && strcmp(l->key_id, v->key.id) != 0) {
		vbreak(v, "%s: signed with another key (key_id %s; this key's id is %s)",
		       l->where, l->key_id, v->key.id);
		return STEP_BROKEN;
	}
	if (!good) {
		v->pend = PEND_MAC;
		snprintf(v->pend_where, sizeof v->pend_where, "%s", l->where);
		memcpy(v->pend_mac, l->mac, AUDIT_MAC_LEN);
		v->pend_first = !v->have_prev;
		return STEP_HELD;
	}
	return STEP_OK;
}

/* 6. A daemon that was killed or crashed wrote no shutdown checkpoint: the
 * next start (after its recovery record) shows that it happened. Noted for
 * audit_verify_finish(); with strict, the chain is broken instead. */
static enum step check_unclean(struct audit_verify *v, const struct vline *l)
{
	if (!v->have_prev || after_shutdown(v) || !l->type || strcmp(l->type, "start") != 0)
		return STEP_OK;
	if (v->unclean++ == 0) {
		snprintf(v->unclean_where, sizeof v->unclean_where, "%s", l->where);
		snprintf(v->unclean_prev, sizeof v->unclean_prev, "%s", v->prev_where);
	}
	if (v->strict) {
		vbreak(v, "%s: unclean shutdown: the daemon started again with no shutdown checkpoint after %s (it was killed or crashed; records it still held may be missing)",
		       l->where, v->prev_where);
		return STEP_BROKEN;
	}
	return STEP_OK;
}

/* 7. The line verified: it is now the previous record. */
static void accept_line(struct audit_verify *v, const struct vline *l)
{
	v->have_prev = true;
	v->prev_has_ts = l->has_ts;
	v->prev_ts = l->ts;
	v->prev_seq = l->seq;
	memcpy(v->prev_mac, l->mac, AUDIT_MAC_LEN);
	snprintf(v->prev_where, sizeof v->prev_where, "%s", l->where);
	v->prev_checkpoint = l->type && strcmp(l->type, "checkpoint") == 0;
	snprintf(v->prev_reason, sizeof v->prev_reason, "%s", l->reason ? l->reason : "");
	v->records++;
}

bool audit_verify_line(struct audit_verify *v, const char *file,
		       unsigned long lineno, const char *line, size_t len,
		       bool terminated)
{
	if (v->broken || v->done)
		return false;
	struct vline l = { 0 };
	snprintf(l.where, sizeof l.where, "%s:%lu", file, lineno);
	if (!terminated)
		return vbreak(v, "%s: truncated tail: the last line is a partial record (no newline)%s",
			      l.where, v->pend == PEND_GAP ? "; and a seq gap before it" : "");

	enum place place = PLACE_NEXT;
	const unsigned char *prev = NULL;
	enum step st = read_line(v, &l, line, len);
	if (st == STEP_OK && v->pend != PEND_NONE)
		st = decide_pending(v, &l);
	if (st == STEP_OK)
		st = check_seq(v, &l, &place);
	if (st == STEP_OK)
		st = check_prev(v, &l, place, &prev);
	if (st == STEP_OK)
		st = check_mac(v, &l, prev);
	if (st == STEP_OK)
		st = check_unclean(v, &l);
	if (st == STEP_OK)
		accept_line(v, &l);
	cJSON_Delete(l.o);
	free(l.signed_bytes.p);
	return st != STEP_BROKEN;
}

bool audit_verify_finish(struct audit_verify *v, char *msg, size_t msglen)
{
	if (!v->broken && !v->done) {
		if (v->pend == PEND_GAP)
			break_on_gap(v);
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
