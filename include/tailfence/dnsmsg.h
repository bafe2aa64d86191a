/*
 * dnsmsg: reads the address answers out of a DNS response message
 * (RFC 1035 wire format). Pure: bounds-checked over the given bytes, no
 * allocation, compression pointers followed only backwards and a bounded
 * number of times.
 */
#ifndef TAILFENCE_DNSMSG_H
#define TAILFENCE_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

#define DNSMSG_TYPE_A 1
#define DNSMSG_TYPE_AAAA 28

/* Collects the rdata of every answer record of type qtype (A: 4 bytes,
 * AAAA: 16) into out (at most max, duplicates dropped) and sets *n and
 * *rcode (0 NOERROR, 3 NXDOMAIN, ...). Returns false with a static
 * sentence in *why when the message is not a well-formed response. */
bool dnsmsg_answers(const uint8_t *msg, size_t len, unsigned qtype, struct cidr_addr *out,
		    size_t max, size_t *n, int *rcode, const char **why);

#endif
