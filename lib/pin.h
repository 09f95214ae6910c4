/*
 * pin: allowed_sans / allowed_fingerprints, the client-certificate pins of a listener or an SNI rule.
 *
 * A pin narrows what a CA-verified client certificate may be: one of the listed subjectAltNames, or one
 * of the listed SHA-256 fingerprints of the leaf's DER. The check runs in the verify callback (lib/tls.c),
 * so a mismatch is a TLS alert like any other verification failure, never an HTTP answer.
 *
 * SAN values are exact: a DNS name (case-insensitive; "*.example.com" matches exactly one more label, as
 * RFC 6125 wildcards do), a URI (byte for byte, e.g. spiffe://...), an email address (case-insensitive),
 * or an IP address (compared as an address: "::1" equals "0:0::1"). Both lists given: either one may
 * match (a SAN or a fingerprint).
 */
#ifndef CDN_PIN_H
#define CDN_PIN_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#define CDN_PIN_SHA256_LEN 32

/* Parses a SHA-256 fingerprint: 64 hex digits, with or without ':' between byte pairs, any case.
 * 0 and out filled, or -1. */
int cdn_pin_parse_fingerprint(const char *s, unsigned char out[CDN_PIN_SHA256_LEN]);

/* Whether s is a usable allowed_sans value (non-empty, no spaces or NUL; '*' only as a left-most
 * "*." label of a DNS name). */
bool cdn_pin_valid_san(const char *s);

/* The pins of one listener or rule; sans are borrowed from the config (valid as long as it is). */
struct cdn_pins {
    const char *const *sans;
    size_t nsans;
    unsigned char (*fps)[CDN_PIN_SHA256_LEN]; /* owned */
    size_t nfps;
};

/* Builds pins from the config lists (fps already validated by the loader). NULL when both are empty.
 * Free with cdn_pins_free. */
struct cdn_pins *cdn_pins_new(char *const *sans, size_t nsans, char *const *fps, size_t nfps);
void cdn_pins_free(struct cdn_pins *p);

/* NULL when leaf satisfies p (or p is NULL), else a short reason for logs ("no SAN in allowed_sans",
 * "fingerprint not in allowed_fingerprints", ...). */
const char *cdn_pins_check(const struct cdn_pins *p, X509 *leaf);

/* SHA-256 of leaf's DER as upper-case hex pairs joined by ':' (95 chars + NUL) into buf (>= 96 bytes). */
void cdn_pin_fingerprint_hex(X509 *leaf, char *buf, size_t n);

#endif
