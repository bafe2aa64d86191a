/*
 * dnsmsg: the answer section of a DNS response, for A and AAAA records.
 */
#include "tailfence/dnsmsg.h"

#include <string.h>

static uint16_t dnsmsg_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* Skips a (possibly compressed) name starting at *pos. A pointer ends the
 * name in place; labels are bounded by the message. */
static bool dnsmsg_skip_name(const uint8_t *msg, size_t len, size_t *pos)
{
	size_t p = *pos;
	for (unsigned labels = 0; labels < 128; labels++) {
		if (p >= len)
			return false;
		uint8_t l = msg[p];
		if (l == 0) {
			*pos = p + 1;
			return true;
		}
		if ((l & 0xc0) == 0xc0) {
			if (p + 2 > len)
				return false;
			*pos = p + 2;
			return true;
		}
		if (l & 0xc0)
			return false;	/* reserved label types */
		p += 1u + l;
	}
	return false;
}

static bool dnsmsg_fail(const char **why, const char *text)
{
	*why = text;
	return false;
}

bool dnsmsg_answers(const uint8_t *msg, size_t len, unsigned qtype, struct cidr_addr *out,
		    size_t max, size_t *n, int *rcode, const char **why)
{
	*n = 0;
	*rcode = 0;
	if (len < 12)
		return dnsmsg_fail(why, "DNS message shorter than its header");
	if (!(msg[2] & 0x80))
		return dnsmsg_fail(why, "DNS message is not a response");
	if (msg[2] & 0x02)
		return dnsmsg_fail(why, "DNS response is truncated");
	*rcode = msg[3] & 0x0f;
	unsigned qd = dnsmsg_u16(msg + 4), an = dnsmsg_u16(msg + 6);
	size_t pos = 12;
	for (unsigned i = 0; i < qd; i++) {
		if (!dnsmsg_skip_name(msg, len, &pos) || pos + 4 > len)
			return dnsmsg_fail(why, "DNS question section is malformed");
		pos += 4;
	}
	size_t want = qtype == 28 ? 16 : 4;
	for (unsigned i = 0; i < an; i++) {
		if (!dnsmsg_skip_name(msg, len, &pos) || pos + 10 > len)
			return dnsmsg_fail(why, "DNS answer section is malformed");
		unsigned type = dnsmsg_u16(msg + pos), cls = dnsmsg_u16(msg + pos + 2);
		size_t rdlen = dnsmsg_u16(msg + pos + 8);
		pos += 10;
		if (pos + rdlen > len)
			return dnsmsg_fail(why, "DNS answer runs past the message");
		if (type == qtype && cls == 1) {
			if (rdlen != want)
				return dnsmsg_fail(why, "DNS address record has the wrong length");
			struct cidr_addr a = { .family = (uint8_t)(want == 4 ? AF_INET : AF_INET6) };
			memcpy(a.b, msg + pos, want);
			cidr_addr_normalize(&a);
			bool dup = false;
			for (size_t k = 0; k < *n; k++)
				dup = dup || cidr_addr_equal(&out[k], &a);
			if (!dup && *n < max)
				out[(*n)++] = a;
		}
		pos += rdlen;
	}
	return true;
}
