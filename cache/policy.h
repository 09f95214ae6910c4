/*
 * policy: the HTTP caching rules of a *shared* cache, as pure functions (RFC 9111, with RFC 5861
 * stale-while-revalidate / stale-if-error, RFC 9213 targeted cache control, RFC 9211 Cache-Status and
 * the RFC 9110 date, range and precondition rules the cache needs).
 *
 * Nothing here does I/O, reads a clock or keeps state: headers, times (int64 seconds since the epoch)
 * and configuration go in, decisions come out, so every rule is a table row in test/unit/test_policy.c.
 *
 * Memory: unless a comment says otherwise, every pointer a function stores in an output struct points
 * into the header values it was given (zero-copy) and is valid only as long as those bytes are. Functions
 * that produce bytes append them to a caller-owned struct cdn_buf. Header arrays produced here
 * (cache_policy_filter_headers, cache_policy_merge_304) reuse the caller's name/value pointers.
 *
 * Typical flow (docs/CACHING.md has the operator's view):
 *   miss:   parse_request + parse_response -> is_storable -> filter_headers, vary_names, vary_key -> store
 *   lookup: vary_match -> parse_response(stored) -> decide -> FRESH/STALE*: serve (not_modified, range,
 *           age_value, cache_status); REVALIDATE: validators -> upstream; 304 -> merge_304 -> re-store;
 *           error -> stale_if_error_ok
 *   unsafe method answered 2xx/3xx: invalidations
 */
#ifndef CDN_CACHE_POLICY_H
#define CDN_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/http1.h"

/* RFC 9111 1.2.2: delta-seconds larger than we represent, and ages that overflow, become 2^31. */
#define CACHE_DELTA_MAX 2147483648LL

/* Values of the int64_t delta fields in struct cache_cc. */
#define CACHE_CC_ABSENT  (-1) /* directive not present */
#define CACHE_CC_INVALID (-2) /* present with an invalid value, or duplicated with different values */

/* Bits of struct cache_cc.flags. */
#define CACHE_CC_NO_STORE         (1u << 0)
#define CACHE_CC_NO_CACHE         (1u << 1) /* with or without a field list: we always treat it as plain */
#define CACHE_CC_PRIVATE          (1u << 2) /* with or without a field list: a shared cache never stores it */
#define CACHE_CC_PUBLIC           (1u << 3)
#define CACHE_CC_MUST_REVALIDATE  (1u << 4)
#define CACHE_CC_PROXY_REVALIDATE (1u << 5)
#define CACHE_CC_MUST_UNDERSTAND  (1u << 6)
#define CACHE_CC_IMMUTABLE        (1u << 7)  /* parsed, informational only (RFC 8246 targets clients) */
#define CACHE_CC_NO_TRANSFORM     (1u << 8)  /* parsed, informational only */
#define CACHE_CC_ONLY_IF_CACHED   (1u << 9)  /* request only */
#define CACHE_CC_MAX_STALE_ANY    (1u << 10) /* request "max-stale" without a value: any staleness */
#define CACHE_CC_FIELDS_OVERFLOW  (1u << 11) /* more field lists than CACHE_CC_MAX_FIELD_LISTS */

#define CACHE_CC_MAX_FIELD_LISTS 4

/* A field-name list given as the argument of no-cache="..." or private="...": the text between the
 * quotes (comma-separated field names), pointing into the header value. */
struct cache_cc_fields {
    const char *p;
    size_t n;
};

/*
 * Parsed Cache-Control (or targeted field) directives. Deltas are seconds, capped at CACHE_DELTA_MAX, or
 * CACHE_CC_ABSENT / CACHE_CC_INVALID. How duplicates and invalid values are folded (RFC 9111 4.2.1:
 * "most restrictive"):
 *  - response max-age / s-maxage: same value twice is fine; different values or an invalid value ->
 *    CACHE_CC_INVALID, which makes the response stale on arrival (freshness lifetime 0);
 *  - stale-while-revalidate / stale-if-error: the smallest valid value; invalid values are ignored;
 *  - request max-age: the smallest; invalid -> 0.  min-fresh: the largest; invalid -> CACHE_DELTA_MAX
 *    (nothing is fresh enough).  max-stale: the smallest (a bare max-stale only counts when no value
 *    was given); an invalid value is ignored (no stale allowed by it).
 * In a targeted field (Structured Field Dictionary, RFC 8941) duplicate keys follow RFC 8941 instead:
 * the last one wins.
 */
struct cache_cc {
    unsigned flags;   /* CACHE_CC_* bits */
    unsigned count;   /* directives seen, known or not (RFC 9213 needs "non-empty") */
    int64_t max_age;  /* response and request */
    int64_t s_maxage; /* response */
    int64_t stale_while_revalidate;
    int64_t stale_if_error; /* response and request */
    int64_t max_stale;      /* request; see also CACHE_CC_MAX_STALE_ANY */
    int64_t min_fresh;      /* request */
    struct cache_cc_fields no_cache_fields[CACHE_CC_MAX_FIELD_LISTS];
    size_t num_no_cache_fields;
    struct cache_cc_fields private_fields[CACHE_CC_MAX_FIELD_LISTS];
    size_t num_private_fields;
};

struct cache_policy_cfg {
    double heuristic_fraction; /* of (Date - Last-Modified); RFC 9111 4.2.2 suggests 10% */
    int64_t heuristic_max;     /* cap on a heuristic lifetime, seconds */
    /* A targeted cache-control field (RFC 9213) that takes priority over CDN-Cache-Control, e.g.
     * "ExampleCDN-Cache-Control". NULL, "" or "CDN-Cache-Control" itself: only CDN-Cache-Control. */
    const char *targeted_cc;
};

#define CACHE_POLICY_CFG_DEFAULT        \
    {                                   \
        0.1, 86400, "CDN-Cache-Control" \
    }

/* Fills *cfg with CACHE_POLICY_CFG_DEFAULT. Every function below also accepts cfg == NULL for that. */
void cache_policy_cfg_defaults(struct cache_policy_cfg *cfg);

/* A counted string inside some header value (NULL/0 when absent). */
struct cache_str {
    const char *p;
    size_t n;
};

struct cache_request_info {
    struct cache_cc cc; /* Cache-Control; Pragma: no-cache sets CACHE_CC_NO_CACHE only when there is no
                           Cache-Control field at all (RFC 9111 5.4) */
    bool has_authorization;
};

struct cache_response_info {
    int status;
    struct cache_cc cc;    /* the effective directives: the targeted field's if one applied, else
                              Cache-Control (RFC 9213 2.2) */
    bool targeted;         /* a targeted field (CDN-Cache-Control...) replaced Cache-Control and Expires */
    int64_t date;          /* Date, -1 if absent or invalid (then the receive time stands in) */
    bool has_expires;      /* an Expires field counts (false when a targeted field applied) */
    int64_t expires;       /* its time; 0 if invalid ("0", garbage or differing duplicates = expired) */
    int64_t last_modified; /* -1 if absent or invalid */
    int64_t age;           /* Age: first member; 0 if absent or invalid (RFC 9111 5.1: ignored) */
    struct cache_str etag; /* raw ETag value, or {NULL, 0} */
    struct cache_str last_modified_raw; /* raw Last-Modified value, or {NULL, 0} */
    struct cache_str date_raw;          /* raw Date value, or {NULL, 0} */
    bool has_vary;
    bool vary_unmatchable; /* Vary contains "*" (or names we cannot key on: too many or not tokens) */
};

/* Parses an HTTP-date (RFC 9110 5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
 * "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit years 70-99 are 19xx, 00-69 are 20xx) and asctime
 * "Sun Nov  6 08:49:37 1994". Surrounding whitespace is allowed; names are matched case-insensitively;
 * the weekday must be a weekday name but is not checked against the date; second 60 is accepted.
 * Returns seconds since the epoch (times before 1970 become 0), or -1 when s[0..n) is not a date. */
int64_t cache_policy_parse_http_date(const char *s, size_t n);

/* Formats t as IMF-fixdate into out (at least 30 bytes, NUL-terminated). Returns the length (29). */
size_t cache_policy_format_http_date(int64_t t, char *out);

/* Parses every Cache-Control field line in h[0..n) into *cc (see struct cache_cc for the folding
 * rules). is_request selects which directives apply. Never fails: unknown or malformed directives are
 * skipped (a malformed max-age & co. counts as invalid). Pointers in *cc point into h's values. */
void cache_policy_parse_cc(const struct cdn_http_header *h, size_t n, bool is_request, struct cache_cc *cc);

/* Parses the targeted field `name` (a Structured Field Dictionary, RFC 9213 2.1) from h[0..n) into *cc.
 * Returns false (and *cc is unspecified) when the field is absent, empty or does not parse; parameters
 * are ignored; max-age/s-maxage must be non-negative Integers (anything else: CACHE_CC_INVALID). */
bool cache_policy_parse_targeted(const struct cdn_http_header *h, size_t n, const char *name,
                                 struct cache_cc *cc);

/* Summarises a request's caching-relevant headers into *out (pointers into h). */
void cache_policy_parse_request(const struct cdn_http_header *h, size_t n, struct cache_request_info *out);

/* Summarises a response: status plus headers h[0..n). Applies RFC 9213: the first valid, non-empty field
 * of the target list [cfg->targeted_cc, "CDN-Cache-Control"] replaces Cache-Control and Expires.
 * Works on a fresh upstream response and on a stored one alike. Pointers in *out point into h. */
void cache_policy_parse_response(const struct cache_policy_cfg *cfg, int status,
                                 const struct cdn_http_header *h, size_t n, struct cache_response_info *out);

/*
 * RFC 9111 3: may this response be stored? method is the request method (case-sensitive, as HTTP
 * methods are); we store responses to GET only (a HEAD request may later be answered from a stored GET
 * response, but a response to HEAD has no body to store). Returns true, or false with *reason set to a
 * static token usable as a Cache-Status detail:
 *   "method"        not GET
 *   "status"        1xx, 206, 304 (we do not store partial content or 304s), or must-understand with a
 *                   status we do not implement
 *   "no-store"      no-store in the request or the response (unless must-understand + understood status,
 *                   RFC 9111 5.2.2.3)
 *   "private"       private (with or without field names: for a shared cache we never store it)
 *   "auth"          the request has Authorization and the response has none of public, s-maxage,
 *                   must-revalidate (RFC 9111 3.5)
 *   "vary-star"     Vary: * or a Vary we cannot key on (RFC 9111 4.1: it never matches)
 *   "cc-fields"     more than CACHE_CC_MAX_FIELD_LISTS no-cache="..." lists: we cannot drop them all
 *   "no-freshness"  none of: public, Expires, max-age, s-maxage, a heuristically cacheable status
 * reason may be NULL.
 */
bool cache_policy_is_storable(const char *method, size_t method_len, const struct cache_request_info *req,
                              const struct cache_response_info *res, const char **reason);

/* RFC 9110 15.1: statuses that are heuristically cacheable (200 203 204 206 300 301 308 404 405 410 414
 * 501). */
bool cache_policy_status_heuristic(int status);

/*
 * RFC 9111 4.2.1: the freshness lifetime in seconds (>= 0): s-maxage, else max-age, else Expires - Date,
 * else (heuristically cacheable status or public, and no explicit expiry at all) the heuristic
 * cfg->heuristic_fraction * (Date - Last-Modified) capped at cfg->heuristic_max, else 0. An invalid
 * s-maxage/max-age/Expires gives 0 (stale). A missing Date is taken as response_time (RFC 9110 6.6.1).
 */
int64_t cache_policy_freshness_lifetime(const struct cache_policy_cfg *cfg,
                                        const struct cache_response_info *res, int64_t response_time);

/*
 * RFC 9111 4.2.3: current age in seconds at `now` for a response requested at request_time and received
 * at response_time (our clock):
 *   apparent_age = max(0, response_time - date_value); response_delay = response_time - request_time;
 *   corrected_age_value = age_value + response_delay; corrected_initial_age = max(apparent_age,
 *   corrected_age_value); resident_time = now - response_time; current_age = corrected_initial_age +
 *   resident_time.
 * Negative intervals (clock steps) count as 0; the result is capped at CACHE_DELTA_MAX.
 */
int64_t cache_policy_current_age(const struct cache_response_info *res, int64_t request_time,
                                 int64_t response_time, int64_t now);

/* The Age header value to send for a current age: clamped to [0, 2147483648] (RFC 9111 5.1, 1.2.2). */
int64_t cache_policy_age_value(int64_t current_age);

enum cache_use {
    CACHE_USE_FRESH,            /* serve the stored response */
    CACHE_USE_STALE,            /* serve it stale: the request's max-stale allows it */
    CACHE_USE_STALE_REVALIDATE, /* serve it stale and revalidate in the background (stale-while-revalidate) */
    CACHE_USE_REVALIDATE,       /* do not serve before validating: send a conditional request upstream.
                                   If the request has only-if-cached, answer 504 instead (RFC 9111
                                   5.2.1.7). */
};

struct cache_decision {
    enum cache_use use;
    int64_t age;      /* current age */
    int64_t lifetime; /* freshness lifetime */
    int64_t ttl;      /* lifetime - age: remaining freshness, negative when stale (Cache-Status ttl) */
    const char *why;  /* static token: "fresh", "max-stale", "stale-while-revalidate", "no-cache",
                         "request-no-cache", "request-max-age", "min-fresh", "must-revalidate", "stale" */
};

/*
 * Decides how a stored response (res, stored at request_time/response_time) may answer req at `now`.
 * Order: response no-cache -> REVALIDATE; request no-cache (or Pragma) -> REVALIDATE; age above request
 * max-age -> REVALIDATE; fresh and min-fresh satisfied -> FRESH; otherwise stale: if no-cache,
 * must-revalidate, proxy-revalidate or s-maxage (which for a shared cache carries proxy-revalidate,
 * RFC 9111 5.2.2.10) is present, nothing stale may be served (RFC 9111 4.2.4) -> REVALIDATE; within the
 * response's stale-while-revalidate window -> STALE_REVALIDATE; within the request's max-stale -> STALE;
 * else REVALIDATE. The method check (GET/HEAD) and Vary matching are the caller's.
 * Returns out->use.
 */
enum cache_use cache_policy_decide(const struct cache_policy_cfg *cfg, const struct cache_response_info *res,
                                   int64_t request_time, int64_t response_time,
                                   const struct cache_request_info *req, int64_t now,
                                   struct cache_decision *out);

/*
 * RFC 5861 4 / RFC 9111 4.2.4: after a failed revalidation or refetch, may the stored response be served
 * instead? upstream_status is the status received (only 500, 502, 503, 504 count as errors) or 0 when
 * no response came (connect/TLS failure, timeout). d is the decision made for this request. Allowed when
 * the response is still fresh, or its staleness is within the response's or the request's
 * stale-if-error, or the request's max-stale; never when no-cache, must-revalidate, proxy-revalidate or
 * s-maxage forbid serving stale. The caller then adds nothing else (Warning is obsolete).
 */
bool cache_policy_stale_if_error_ok(const struct cache_response_info *res,
                                    const struct cache_request_info *req, const struct cache_decision *d,
                                    int upstream_status);

/*
 * RFC 9111 4.3.1: the validators to put on a conditional request revalidating res: If-None-Match with
 * the stored ETag, and If-Modified-Since with the stored Last-Modified (or, without one, the stored
 * Date). Writes 0..2 headers to out (names are static strings, values point into res's header values;
 * hop_by_hop false) and returns how many. The caller removes any client conditionals first.
 */
size_t cache_policy_validators(const struct cache_response_info *res, struct cdn_http_header out[2]);

/*
 * RFC 9111 4.3.2 + RFC 9110 13.2.2: should a client's conditional GET/HEAD be answered 304 from the
 * stored response? Only If-None-Match (weak comparison; "*" matches) and, when If-None-Match is absent,
 * If-Modified-Since (against Last-Modified, else the stored Date, else response_time) apply to a cache;
 * If-Match / If-Unmodified-Since are left to the origin. Only a stored 200 is evaluated. Returns true
 * for 304 Not Modified, false to send the stored response normally.
 */
bool cache_policy_not_modified(const char *method, size_t method_len, const struct cdn_http_header *req_h,
                               size_t req_n, const struct cache_response_info *res, int64_t response_time);

/*
 * RFC 9111 3.1: is a header line worth storing? Drops hop-by-hop lines (the parser's flag, the
 * standard hop-by-hop names, and names listed in a Connection line of the same list), Proxy-Authenticate,
 * Proxy-Authentication-Info, Proxy-Authorization, and the fields named by no-cache="..." or private="..."
 * in cc (may be NULL). Writes the kept lines to out (room for n; must not be h) in order and returns
 * how many. Name and value pointers are h's.
 */
size_t cache_policy_filter_headers(const struct cdn_http_header *h, size_t n, const struct cache_cc *cc,
                                   struct cdn_http_header *out);

/*
 * RFC 9111 4.3.4 + 3.2: freshens a stored header list with a 304's headers. Every header of the 304
 * replaces all stored lines of the same name; stored lines the 304 lacks are kept; the 304's
 * hop-by-hop/proxy lines (as cache_policy_filter_headers) and Content-Length, Content-Range and
 * Transfer-Encoding are never taken (the stored body's framing stays). Two deliberate exceptions to
 * "keep": the stored Age and Date lines are dropped when the 304 has none, because the caller restarts
 * the age clock with the validation's request/response times (a missing Date is then taken as the
 * receive time). Output: out[0..max) gets stored lines (in order) then the 304's; pointers are the
 * inputs'. Returns the count, or CDN_ELIMIT if more than max lines would result. Afterwards parse the
 * result again and run cache_policy_filter_headers with its cc before storing.
 */
int cache_policy_merge_304(const struct cdn_http_header *stored, size_t ns, const struct cdn_http_header *upd,
                           size_t nu, struct cdn_http_header *out, size_t max);

#define CACHE_INVALIDATE_MAX 3

/*
 * RFC 9111 4.4: after an unsafe request (any method but GET, HEAD, OPTIONS, TRACE) answered with a 2xx
 * or 3xx status, which URIs to invalidate: the request's path (origin-form, as the parser gives it), then
 * the paths of Location and Content-Location when they are absolute paths ("/x") or absolute URIs
 * ("http[s]://authority/x", "//authority/x") whose authority equals host (case-insensitive; ports must
 * be spelled the same). Relative references ("x", "../x") are skipped, fragments cut, duplicates
 * removed. Writes up to CACHE_INVALIDATE_MAX paths (pointing into path or the header values) and
 * returns how many (0 when nothing is to be invalidated).
 */
size_t cache_policy_invalidations(const char *method, size_t method_len, const char *host, size_t host_len,
                                  const char *path, size_t path_len, int status,
                                  const struct cdn_http_header *res_h, size_t res_n,
                                  struct cache_str out[CACHE_INVALIDATE_MAX]);

/*
 * Vary (RFC 9111 4.1). The stored form of a Vary is its field names, lowercased, de-duplicated, sorted
 * and joined with ",", e.g. "accept-encoding,accept-language" ("" when there is no Vary).
 * cache_policy_vary_names appends that for the Vary lines in h[0..n) to out and returns true, or returns
 * false when Vary contains "*", a member that is not a token, or more than 64 names (such a response
 * can never be matched; out is then unspecified).
 */
bool cache_policy_vary_names(const struct cdn_http_header *h, size_t n, struct cdn_buf *out);

/*
 * Appends the secondary key of a request for the given stored Vary names to out: for each name,
 * "<name>" then "!" if the request has no such field, or "=<len>:<value>" with the request's field lines
 * combined: split at commas (outside quoted strings), each element trimmed of whitespace, empty
 * elements dropped, joined with ",". Absent and empty therefore differ; values keep their case. Then "\n".
 * Deterministic: equal keys <=> matching requests under those normalisations. Empty names: nothing.
 */
void cache_policy_vary_key(const char *names, size_t names_len, const struct cdn_http_header *req_h,
                           size_t req_n, struct cdn_buf *out);

/* Does the request match a stored response's secondary key (built with the same names)? */
bool cache_policy_vary_match(const char *names, size_t names_len, const struct cdn_http_header *req_h,
                             size_t req_n, const char *key, size_t key_len);

enum cache_range {
    CACHE_RANGE_NONE,          /* no (usable) Range: send the full 200 */
    CACHE_RANGE_PARTIAL,       /* 206 with Content-Range: bytes first-last/size */
    CACHE_RANGE_UNSATISFIABLE, /* 416 with Content-Range: bytes (star)/size */
};

/*
 * RFC 9110 14.1-14.2: interprets a Range value against a representation of `size` bytes. Only a single
 * "bytes" range is honoured: first-last (last clamped to size-1), first- and -suffix. Returns PARTIAL
 * with [*first, *last], UNSATISFIABLE when the one range starts at or after size (or is "-0"), and NONE
 * for anything else: other units, several ranges, malformed or last < first, and size 0.
 */
enum cache_range cache_policy_parse_range(const char *v, size_t n, uint64_t size, uint64_t *first,
                                          uint64_t *last);

/*
 * The range decision for a request served from a stored response: Range is honoured only on GET, only
 * for a stored 200, and, when If-Range is present (RFC 9110 13.1.5), only if it is a strong ETag
 * strongly equal to the stored ETag or an HTTP-date equal to the stored Last-Modified; otherwise NONE.
 */
enum cache_range cache_policy_range(const char *method, size_t method_len,
                                    const struct cdn_http_header *req_h, size_t req_n,
                                    const struct cache_response_info *res, uint64_t size, uint64_t *first,
                                    uint64_t *last);

/* Writes the Content-Range value for a PARTIAL ("bytes 0-99/1000") or UNSATISFIABLE ("bytes * /1000",
 * without the space) result into out (NUL-terminated; 64 bytes always suffice). Returns the length, or
 * 0 for NONE. */
size_t cache_policy_content_range(enum cache_range r, uint64_t first, uint64_t last, uint64_t size, char *out,
                                  size_t cap);

/* One Cache-Status list member (RFC 9211 2). Unset fields are omitted. */
struct cache_status {
    const char *cache;  /* our identifier (tier or node name): sf-token if it is one, else an sf-string */
    bool hit;           /* "hit"; excludes fwd */
    const char *fwd;    /* NULL, or "bypass", "method", "uri-miss", "vary-miss", "miss", "request",
                           "stale", "partial" */
    int fwd_status;     /* 0 = omit */
    bool stored;        /* the forwarded response was stored */
    bool collapsed;     /* the request was collapsed with another one */
    bool has_ttl;       /* then ttl (seconds, may be negative) is sent */
    int64_t ttl;        /* clamped to the sf-integer range */
    const char *key;    /* NULL = omit (sf-string) */
    const char *detail; /* NULL = omit; sf-token if it is one, else an sf-string */
};

/*
 * Appends a Cache-Status field value to out: the received value (trimmed; may be NULL/0 or come from
 * several lines the caller combined with ", ") followed by our member, separated by ", " - the cache
 * nearest the origin comes first. Example: "regional; fwd=uri-miss; fwd-status=200; stored; ttl=300,
 * edge; hit; ttl=299". Non-printable bytes in strings become '?'.
 */
void cache_policy_cache_status(const struct cache_status *cs, const char *received, size_t received_len,
                               struct cdn_buf *out);

#endif
