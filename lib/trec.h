/*
 * trec: a server-side TLS 1.3 record layer (RFC 8446 5, 4.6.3, 6, 7.1-7.3) that takes over an established
 * connection from OpenSSL after the handshake, so the SSL object (~14 KiB) can be freed and application data
 * is sealed and opened here. The handshake stays in OpenSSL; the caller hands over the two application
 * traffic secrets, the suite and the next sequence number of each direction.
 * Suites: 0x1301 AES-128-GCM-SHA256, 0x1302 AES-256-GCM-SHA384, 0x1303 CHACHA20-POLY1305-SHA256.
 */
#ifndef CDN_TREC_H
#define CDN_TREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct cdn_trec;

#define CDN_TREC_EOF 1 /* cdn_trec_open: the peer sent close_notify */

/* cipher: the suite's 16-bit id (SSL_CIPHER_get_protocol_id). secret_len must be the suite's hash length
 * (32 or 48); read_secret is client_application_traffic_secret_N, write_secret the server's. Returns NULL for
 * an unsupported suite or a wrong length. Keys are derived at once; the secrets are kept (for KeyUpdate) and
 * wiped when freed. */
struct cdn_trec *cdn_trec_new(uint16_t cipher, const uint8_t *read_secret, const uint8_t *write_secret,
                              size_t secret_len, uint64_t read_seq, uint64_t write_seq);
/* NULL-safe; sets *r = NULL and cleanses every key. */
void cdn_trec_free(struct cdn_trec **r);

/* Seals n bytes of application data into records of at most 16384 plaintext bytes each, appended to out.
 * n == 0 appends nothing. 0, or CDN_ETLS (also after close_notify or a fatal alert was sent). */
int cdn_trec_seal(struct cdn_trec *r, const void *p, size_t n, struct cdn_buf *out);
/* Appends a close_notify alert record; seal refuses afterwards. 0 or CDN_ETLS. */
int cdn_trec_close_notify(struct cdn_trec *r, struct cdn_buf *out);

/* Opens whole records from the front of in (consumed as each is opened; an incomplete record stays) and
 * appends at most room bytes of application data to plain. The rest of a record that does not fit is kept
 * inside r and handed out first by later calls. A KeyUpdate(update_requested) appends our own KeyUpdate to
 * out. Returns the bytes appended (0: need more input, or room == 0), CDN_TREC_EOF once close_notify was
 * received (and from then on), or CDN_ETLS after appending the fatal alert to out (none when the peer sent an
 * alert); err (may be NULL) then gets a one-line reason. CDN_EINVAL for NULL arguments. */
int cdn_trec_open(struct cdn_trec *r, struct cdn_buf *in, struct cdn_buf *plain, size_t room,
                  struct cdn_buf *out, char *err, size_t errlen);
/* True while decrypted application data is held inside r (not yet handed out by cdn_trec_open). */
bool cdn_trec_pending(const struct cdn_trec *r);
/* Frees the two cipher contexts while the connection is idle (keeps the keys); the next seal/open
 * recreates them. */
void cdn_trec_trim(struct cdn_trec *r);

#endif
