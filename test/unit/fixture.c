/* fixture: see fixture.h. */
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

#include "test/unit/fixture.h"

static char pki[256];

void fixture_pki_make(bool test_set)
{
    snprintf(pki, sizeof(pki), "/tmp/cdn-test-pki-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(pki));
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "sh scripts/pki.sh %s %s >/dev/null 2>&1", test_set ? "--test" : "", pki);
    ck_assert_int_eq(system(cmd), 0);
}

void fixture_pki_remove(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", pki);
    ck_assert_int_eq(system(cmd), 0);
}

char *fixture_pki_path(const char *name)
{
    static char buf[32][320];
    static int i;
    i = (i + 1) % 32;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", pki, name);
    return buf[i];
}
