/*
 * sni: per-SNI client-certificate rules (the config's sni: list, in the spirit of ATS sni.yaml).
 *
 * A listener's SSL_CTX gets a ClientHello callback that reads the server_name extension, picks a rule
 * and applies its policy to the SSL before the handshake goes on: verify mode and depth, the CA names
 * of the CertificateRequest, and, through SSL_set_SSL_CTX, the rule's own context (server certificate,
 * CA bundle, CRLs). The matched rule stays on the SSL (ex_data), for log lines and for the Host != SNI
 * check (421 Misdirected Request) of the request path.
 *
 * Matching (cdn_sni_match_index, pure): case-insensitive, one trailing dot ignored. An exact fqdn beats
 * every wildcard; among wildcards ("*.example.com": one OR MORE labels before ".example.com", never
 * example.com itself) the longest suffix wins; fqdn '' matches clients that send no SNI (and an IP address,
 * which is no server name: a Host of 10.0.0.5). Nothing matches: the listener's own settings.
 */
#ifndef CDN_SNI_H
#define CDN_SNI_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "lib/conf.h"

/* What a connection was (or a Host would be) verified under: a rule, or the listener's own settings. */
struct cdn_sni_policy {
    const char *fqdn;    /* the rule's fqdn ("" for no SNI); NULL for the listener's own settings */
    size_t index;        /* position in the sni: list */
    int level;           /* enum cdn_client_auth, resolved: NONE, REQUEST (MODERATE) or REQUIRE (STRICT) */
    const char *ca_file; /* trust anchors and CRLs in force (borrowed from the config); NULL = none */
    const char *crl_file;
    const void *pins; /* identifies the allowed_sans/allowed_fingerprints in force (the config object
                       * that holds them); NULL = no pins */
    bool log_only;    /* refusals are only logged (sni[].log_only) */
    SSL_CTX *ctx;     /* switched to in the ClientHello; NULL = stay on the listener's context */
    char sid_ctx[32]; /* session id context: a session never resumes under another rule */
};

struct cdn_sni {
    struct cdn_sni_policy dflt; /* the listener's own settings */
    struct cdn_sni_policy *rules;
    const char **fqdns; /* rules[i].fqdn, for the matcher */
    size_t nrules;
    int host_sni_policy; /* enum cdn_host_sni_policy */
};

/* Index of the rule that matches name (len bytes; NULL or len 0 = no SNI) among fqdns (lower-case, as
 * the config stores them), or -1. Deterministic: exact, then the longest wildcard, then -1. */
long cdn_sni_match_index(const char *const *fqdns, size_t n, const char *name, size_t len);

/* The rule (or t->dflt) for name. */
const struct cdn_sni_policy *cdn_sni_match(const struct cdn_sni *t, const char *name, size_t len);

/* Whether a connection verified under conn (had_cert: a client certificate was presented and verified)
 * may serve a request whose Host maps to host: host asks for no certificate, or for no more than conn
 * enforced, against the same CA bundle, CRLs and pins. A log_only conn enforced nothing but what had_cert
 * says. */
bool cdn_sni_policy_covers(const struct cdn_sni_policy *conn, bool had_cert,
                           const struct cdn_sni_policy *host);

/* The host name of a Host header value: without ":port", IPv6 brackets removed. Sets *len. */
const char *cdn_sni_host_name(const char *host, size_t host_len, size_t *len);

/* Builds the rules for one TLS listener (lc, its context ctx, effective level client_auth) from
 * conf->sni and installs the ClientHello callback on ctx. The table is owned by ctx (freed with it).
 * *out = the table (NULL when conf has no rules). 0, or -1 + *err (heap) naming the rule. */
int cdn_sni_attach(SSL_CTX *ctx, const struct cdn_conf *conf, const struct cdn_conf_listener *lc,
                   int client_auth, const struct cdn_sni **out, char **err);

/* The policy the connection's ClientHello selected; NULL before it or without rules. */
const struct cdn_sni_policy *cdn_sni_of(const SSL *ssl);

/* For log lines: the rule's fqdn quoted ('' for no SNI, '*.x' ...), or "-" for the listener's own. */
const char *cdn_sni_rule_name(const struct cdn_sni_policy *p, char *buf, size_t n);

/* Request path: 0 when the request with this Host may go on; 421 when Host maps to a rule the
 * connection was not verified under (host_sni_policy enforce; permissive only logs). Logs a refusal. */
int cdn_sni_check_host(const struct cdn_sni *t, SSL *ssl, const char *host, size_t host_len,
                       unsigned long long conn_id, const char *peer);
/* The same from what the handshake left: the connection's policy (cdn_sni_of), whether a certificate
 * was sent and verified, and the SNI (for connections whose SSL was freed, lib/conn takeover). */
int cdn_sni_check_host_policy(const struct cdn_sni *t, const struct cdn_sni_policy *conn, bool verified,
                              bool cert, const char *sni, const char *host, size_t host_len,
                              unsigned long long conn_id, const char *peer);

#endif
