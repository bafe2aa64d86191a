/*
 * hostname: the one definition of a host name, used for what SOCKS and
 * HTTP clients ask for, for rule destinations and for `tailfence check`,
 * so that no spelling is a name to one of them and something else to
 * another.
 *
 * A host name: labels of letters, digits, '-' and '_', 1 to 63 bytes each,
 * at most 253 bytes, one optional trailing dot (the root), not made only
 * of digits and dots. Names compare in lower case without the trailing
 * dot. Pure.
 */
#ifndef TAILFENCE_HOSTNAME_H
#define TAILFENCE_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* NULL when s[0..len) is a host name, else why not ("has an empty label",
 * "is neither a host name nor an IPv4 address in dotted-quad form", ...). */
const char *hostname_problem(const char *s, size_t len);

/* Writes the comparison form of a valid name (lower case, no trailing
 * dot) into out; returns false when s is not a name or out is too small. */
bool hostname_normalize(const char *s, size_t len, char *out, size_t outlen);

#endif
