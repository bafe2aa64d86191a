/*
 * proxyproto: the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) that `tailscale serve --proxy-protocol N` writes in
 * front of each connection it forwards, carrying the tailnet peer's
 * address and port.
 *
 * Pure: one function over the bytes received so far, called again with
 * more when it needs them (the caller keeps the bytes; the header is
 * parsed from the start each time, at most PROXYPROTO_MAX bytes). It never
 * touches a socket, so the unit tests and the fuzzer drive it directly.
 *
 * Strict on purpose: the header decides who the connection is attributed
 * to, so anything but a well-formed PROXY command for TCP over IPv4 or
 * IPv6 is an error with a sentence saying what was wrong (no header at
 * all, the other version, LOCAL, UNKNOWN, UDP or UNIX families, bad
 * addresses or ports, truncated or overlong TLVs, a wrong CRC32C).
 */
#ifndef TAILFENCE_PROXYPROTO_H
#define TAILFENCE_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailfence/cidr.h"

/* Versions a listener accepts (a bit mask). */
#define PROXYPROTO_V1 1u
#define PROXYPROTO_V2 2u

/* Version 1: the longest line the specification allows, CRLF included. */
#define PROXYPROTO_V1_MAX 107
/* Version 2: 16 bytes, then at most this many of addresses and TLVs (the
 * format allows 65535; tailscaled sends 12 or 36). */
#define PROXYPROTO_V2_MAX_BODY 2048
/* The most bytes a caller ever needs to hold to get an answer. */
#define PROXYPROTO_MAX (16 + PROXYPROTO_V2_MAX_BODY)

enum proxyproto_step {
	PROXYPROTO_NEED_MORE = 0,	/* a valid prefix so far; call again with more */
	PROXYPROTO_DONE,		/* *consumed bytes are the header */
	PROXYPROTO_ERROR,		/* why says what was wrong */
};

struct proxyproto_header {
	unsigned version;		/* 1 or 2 */
	struct cidr_addr src, dst;	/* normalised (an IPv4-mapped source is IPv4) */
	uint16_t src_port, dst_port;
	size_t tlv_bytes;		/* v2: bytes of TLVs after the addresses */
	bool crc_checked;		/* v2: a CRC32C TLV was present and matched */
	char why[160];			/* on PROXYPROTO_ERROR: one line for people */
};

/* Parses the header at the start of buf[0..len). versions is the mask the
 * listener accepts; a header of another version is an error naming both.
 * On DONE, *consumed is the header's length and h holds it; on NEED_MORE
 * and ERROR *consumed is 0. Never reads past len. */
enum proxyproto_step proxyproto_parse(const uint8_t *buf, size_t len, unsigned versions,
				      struct proxyproto_header *h, size_t *consumed);

/* CRC32C (Castagnoli) of buf[0..len), as version 2's CRC32C TLV carries it. */
uint32_t proxyproto_crc32c(const uint8_t *buf, size_t len);

#endif
