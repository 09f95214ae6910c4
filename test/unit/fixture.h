/* fixture: what several unit suites share: a development PKI made by scripts/pki.sh in a temp folder. */
#ifndef CDN_TEST_FIXTURE_H
#define CDN_TEST_FIXTURE_H

#include <stdbool.h>

/* Makes the PKI (with the --test set of bad certificates when test_set) in a fresh temp folder; for
 * unchecked fixtures (once per test case). Tests run from the repository root. */
void fixture_pki_make(bool test_set);
void fixture_pki_remove(void);
/* "<pki folder>/<name>" in one of 32 rotating static buffers (enough for what one test holds). */
char *fixture_pki_path(const char *name);

#endif
