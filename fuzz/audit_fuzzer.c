/*
 * audit_fuzzer: the audit chain verifier and the RFC 3339 time parser over
 * arbitrary input, split into lines as `tailfence audit verify` reads them.
 */
#include "tailfence/audit.h"
#include "tailfence/audit_read.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
	struct audit_verify *v = audit_verify_new(key, sizeof key - 1);
	if (!v)
		return 0;
	const char *p = (const char *)data;
	unsigned long lineno = 0;
	while (size > 0) {
		const char *nl = memchr(p, '\n', size);
		size_t n = nl ? (size_t)(nl - p) : size;
		int64_t ms;
		audit_read_time_parse(p, n, &ms);
		audit_verify_line(v, "fuzz", ++lineno, p, n, nl != NULL);
		p += n + (nl ? 1 : 0);
		size -= n + (nl ? 1 : 0);
	}
	char msg[1024];
	audit_verify_finish(v, msg, sizeof msg);
	audit_verify_records(v);
	audit_verify_free(v);
	return 0;
}
