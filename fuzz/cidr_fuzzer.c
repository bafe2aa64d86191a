/*
 * cidr_fuzzer: address and prefix parsing over arbitrary bytes. Checks that
 * whatever parses formats back to text that parses to the same value.
 */
#include "tailfence/cidr.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct cidr_prefix p, p2;
	struct cidr_addr a, a2;
	char err[256], buf[CIDR_PREFIX_STRLEN];

	if (cidr_prefix_parse(s, size, &p, err, sizeof err)) {
		cidr_prefix_format(&p, buf, sizeof buf);
		if (!cidr_prefix_parse(buf, strlen(buf), &p2, err, sizeof err) || p2.bits != p.bits ||
		    !cidr_addr_equal(&p.addr, &p2.addr))
			abort();
		if (!cidr_prefix_contains(&p, &p.addr))
			abort();
	}
	if (cidr_addr_parsen(s, size, &a)) {
		cidr_addr_format(&a, buf, sizeof buf);
		if (!cidr_addr_parse(buf, &a2) || !cidr_addr_equal(&a, &a2))
			abort();
	}
	return 0;
}
