/* Runs every module's Check suite. Each test_<module>.c exports suite_<module>(). */
#include <stdlib.h>

#include <check.h>

#include "test/unit/suites.h"

int main(void)
{
    SRunner *sr = srunner_create(suite_util());
    srunner_add_suite(sr, suite_http1());
    srunner_add_suite(sr, suite_conf());
    srunner_add_suite(sr, suite_remap());
    srunner_add_suite(sr, suite_tls());
    srunner_add_suite(sr, suite_conn());
    srunner_add_suite(sr, suite_pool());
    srunner_add_suite(sr, suite_policy());
    srunner_add_suite(sr, suite_entry());
    srunner_add_suite(sr, suite_store());
    srunner_add_suite(sr, suite_evict());
    srunner_add_suite(sr, suite_key());
    srunner_add_suite(sr, suite_collapse());
    srunner_add_suite(sr, suite_stats());
    srunner_add_suite(sr, suite_admin());
    srunner_add_suite(sr, suite_certcheck());
    srunner_add_suite(sr, suite_sni());
    srunner_add_suite(sr, suite_log());
    srunner_add_suite(sr, suite_watch());
    srunner_add_suite(sr, suite_alog());
    srunner_add_suite(sr, suite_ring());
    srunner_add_suite(sr, suite_health());
    srunner_add_suite(sr, suite_pin());
    srunner_add_suite(sr, suite_ident());
    srunner_add_suite(sr, suite_tunnel());
    srunner_add_suite(sr, suite_ugroup());
    srunner_add_suite(sr, suite_trec());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
