/* Unit tests for lib/alog: compiling access log formats and rendering lines. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alog.h"
#include "lib/util.h"
#include "test/unit/suites.h"

static char *render(const char *fmt, const char *const v[CDN_ALOG_NVARS])
{
    struct cdn_alog *a = NULL;
    char *err = NULL;
    ck_assert_msg(cdn_alog_compile(fmt, &a, &err) == 0, "%s", err);
    size_t len[CDN_ALOG_NVARS];
    for (size_t i = 0; i < CDN_ALOG_NVARS; i++)
        len[i] = SIZE_MAX;
    struct cdn_buf b;
    cdn_buf_init(&b);
    cdn_alog_render(a, v, len, &b);
    char *s = cdn_xstrndup(cdn_buf_data(&b), b.len);
    cdn_buf_dispose(&b);
    cdn_alog_free(&a);
    ck_assert_ptr_null(a);
    return s;
}

START_TEST(variables_and_literals)
{
    const char *v[CDN_ALOG_NVARS] = {0};
    v[CDN_ALOG_method] = "GET";
    v[CDN_ALOG_path] = "/a?b=1";
    v[CDN_ALOG_status] = "200";
    v[CDN_ALOG_duration_ms] = "12";
    char *s = render("$method ${path} $status ${duration_ms}ms $$5 $cache", v);
    ck_assert_str_eq(s, "GET /a?b=1 200 12ms $5 -");
    free(s);
    s = render("", v);
    ck_assert_str_eq(s, "");
    free(s);
    s = render("no variables at all", v);
    ck_assert_str_eq(s, "no variables at all");
    free(s);
}
END_TEST

START_TEST(escaping)
{
    const char *v[CDN_ALOG_NVARS] = {0};
    v[CDN_ALOG_user_agent] = "evil\" 200 x\n1.2.3.4 \"GET\\";
    v[CDN_ALOG_client_subject] = "CN=caf\xc3\xa9"; /* UTF-8: escaped byte by byte */
    char *s = render("ua=\"$user_agent\" sub=\"$client_subject\"", v);
    ck_assert_str_eq(s, "ua=\"evil\\x22 200 x\\x0A1.2.3.4 \\x22GET\\x5C\" sub=\"CN=caf\\xC3\\xA9\"");
    ck_assert_ptr_null(strchr(s, '\n'));
    free(s);
}
END_TEST

START_TEST(refused)
{
    static const char *const bad[] = {"$nosuch", "a $ b", "${method", "${}", "$", "x ${no_such} y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cdn_alog *a = (struct cdn_alog *)1;
        char *err = NULL;
        ck_assert_msg(cdn_alog_compile(bad[i], &a, &err) == -1, "accepted: %s", bad[i]);
        ck_assert_ptr_nonnull(err);
        free(err);
    }
    char *err = NULL;
    struct cdn_alog *a = NULL;
    ck_assert_int_eq(cdn_alog_compile("$nosuch", &a, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "$nosuch"));
    free(err);
}
END_TEST

START_TEST(default_format_and_uses)
{
    struct cdn_alog *a = NULL;
    char *err = NULL;
    ck_assert_int_eq(cdn_alog_compile(CDN_ALOG_DEFAULT, &a, &err), 0);
    ck_assert(cdn_alog_uses(a, CDN_ALOG_client_fingerprint));
    ck_assert(cdn_alog_uses(a, CDN_ALOG_cache));
    ck_assert(!cdn_alog_uses(a, CDN_ALOG_user_agent));
    cdn_alog_free(&a);
    /* every variable has a name and a description, and docs/CONFIG.md lists it */
    FILE *f = fopen("docs/CONFIG.md", "rb");
    ck_assert_ptr_nonnull(f);
    static char doc[512 * 1024];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = '\0';
    for (int i = 0; i < CDN_ALOG_NVARS; i++) {
        ck_assert(strlen(cdn_alog_var_doc(i)) > 0);
        char row[96];
        snprintf(row, sizeof(row), "| `$%s` |", cdn_alog_var_name(i));
        ck_assert_msg(strstr(doc, row) != NULL, "docs/CONFIG.md lacks %s", row);
    }
}
END_TEST

Suite *suite_alog(void)
{
    Suite *s = suite_create("alog");
    TCase *tc = tcase_create("alog");
    tcase_add_test(tc, variables_and_literals);
    tcase_add_test(tc, escaping);
    tcase_add_test(tc, refused);
    tcase_add_test(tc, default_format_and_uses);
    suite_add_tcase(s, tc);
    return s;
}
