#ifndef CDN_TEST_SUITES_H
#define CDN_TEST_SUITES_H

#include <check.h>

Suite *suite_util(void);
Suite *suite_http1(void);
Suite *suite_conf(void);
Suite *suite_remap(void);
Suite *suite_tls(void);
Suite *suite_conn(void);
Suite *suite_pool(void);
Suite *suite_policy(void);
Suite *suite_entry(void);
Suite *suite_store(void);
Suite *suite_evict(void);
Suite *suite_key(void);
Suite *suite_collapse(void);
Suite *suite_stats(void);
Suite *suite_admin(void);
Suite *suite_certcheck(void);
Suite *suite_sni(void);
Suite *suite_log(void);
Suite *suite_watch(void);
Suite *suite_alog(void);
Suite *suite_ring(void);
Suite *suite_health(void);
Suite *suite_pin(void);
Suite *suite_ident(void);
Suite *suite_tunnel(void);
Suite *suite_ugroup(void);
Suite *suite_trec(void);

#endif
