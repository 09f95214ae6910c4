/*
 * entry: the on-disk metadata record of one cached response, kept by the store next to the body.
 *
 * Format version 1, all integers little-endian, no padding, one canonical encoding per entry:
 *
 *   off  size  field
 *     0     4  magic "CDNE"
 *     4     2  format version (1)
 *     6     2  reserved, 0
 *     8     4  record length in bytes, this header and the trailing CRC included
 *    12     2  HTTP status (200..599)
 *    14     2  reserved, 0
 *    16     8  request_time  (int64, seconds since the epoch)
 *    24     8  response_time (int64)
 *    32     8  body_size (uint64)
 *    40     4  flags (CACHE_ENTRY_F_*; unknown bits are rejected)
 *    44     4  number of header lines (<= CDN_HTTP_MAX_HEADERS)
 *    48        key, vary names, secondary key: each u32 length + bytes
 *              then per header line: u32 name length + name, u32 value length + value
 *   end-4   4  CRC-32 (IEEE 802.3, as zlib's crc32) of every byte before it
 *
 * The primary key is stored in full so that the store can detect hash collisions; the vary names and
 * secondary key are cache_policy_vary_names / cache_policy_vary_key output. Header names must be
 * tokens and values must not contain CR, LF or NUL, on encode and on decode, so a record can never
 * inject lines into a response.
 */
#ifndef CDN_CACHE_ENTRY_H
#define CDN_CACHE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/http1.h"

#define CACHE_ENTRY_MAGIC   "CDNE"
#define CACHE_ENTRY_VERSION 2 /* 2: CRC-32C */

/* Fixed part before the variable fields, and the smallest possible record (three empty strings, no
 * headers, CRC). */
#define CACHE_ENTRY_FIXED_SIZE 48
#define CACHE_ENTRY_MIN_SIZE   (CACHE_ENTRY_FIXED_SIZE + 3 * 4 + 4)

/* Decode errors, in the cdn-node error space (-20000..-20999; see lib/util.h). */
#define CACHE_ENTRY_EMAGIC    (-20201) /* not a cache entry record */
#define CACHE_ENTRY_EVERSION  (-20202) /* a format version this build does not read */
#define CACHE_ENTRY_ETRUNC    (-20203) /* fewer bytes than the record says it has */
#define CACHE_ENTRY_ECHECKSUM (-20204) /* CRC mismatch: the bytes were damaged */
#define CACHE_ENTRY_EFORMAT   (-20205) /* CRC fine but the contents are inconsistent or invalid */

/* Entry flags. */
#define CACHE_ENTRY_F_COMPLETE (1u << 0) /* the whole body was received and stored */
#define CACHE_ENTRY_F_ALL      CACHE_ENTRY_F_COMPLETE

struct cache_entry {
    int status;
    int64_t request_time;  /* when we sent the request that produced (or last validated) it */
    int64_t response_time; /* when its head arrived */
    uint64_t body_size;
    uint32_t flags;
    const char *key; /* primary cache key */
    size_t key_len;
    const char *vary; /* normalised Vary names ("" / 0 when none) */
    size_t vary_len;
    const char *secondary_key; /* secondary key bytes (0 length when no Vary) */
    size_t secondary_key_len;
    /* Encode: the header lines to store (already filtered by cache_policy_filter_headers).
     * Decode: NULL; num_headers is set and cache_entry_headers() gives them back. */
    const struct cdn_http_header *headers;
    size_t num_headers;
    /* Decode only: the serialised header lines inside the record. */
    const char *raw_headers;
    size_t raw_headers_len;
};

/* Appends the record for e to out. Returns 0, or CDN_EINVAL (nothing appended) when e cannot be
 * represented: status outside 200..599, unknown flags, more than CDN_HTTP_MAX_HEADERS lines, a header
 * name that is not a token, a value with CR/LF/NUL, or a field longer than 4 GiB. */
int cache_entry_encode(const struct cache_entry *e, struct cdn_buf *out);

/*
 * Decodes the record p[0..n) into *out, checking every length against n (p may be hostile). Returns 0
 * or CACHE_ENTRY_EMAGIC / EVERSION / ETRUNC / ECHECKSUM / EFORMAT (a record followed by extra bytes is
 * EFORMAT). Zero-copy: key, vary, secondary_key and raw_headers point into p and are valid only as long
 * as p is (for an LMDB value: until the read transaction ends; copy what you keep).
 */
int cache_entry_decode(const void *p, size_t n, struct cache_entry *out);

/* Fills out[0..max) with the header lines of a decoded entry (pointing into its record, hop_by_hop
 * false). Returns the number of lines, or CDN_ELIMIT (nothing written) if max < e->num_headers. */
int cache_entry_headers(const struct cache_entry *e, struct cdn_http_header *out, size_t max);

/* Text for a CACHE_ENTRY_E* code (other codes: cdn_strerror). */
const char *cache_entry_strerror(int err);

/* CRC-32C (Castagnoli) of p[0..n), continuing from crc (start with 0). */
uint32_t cache_entry_crc32(uint32_t crc, const void *p, size_t n);

#endif
