/* Unit tests for lib/health: the passive up/down state machine, half-open probes, back-off. */
#include <check.h>
#include <pthread.h>

#include "lib/health.h"
#include "test/unit/suites.h"

static const struct cdn_health_cfg cfg = {.threshold = 3, .backoff_ms = 1000};

START_TEST(down_after_threshold_and_back)
{
    struct cdn_health h;
    cdn_health_init(&h);
    bool probe;
    ck_assert(cdn_health_usable(&h, 0, &probe) && !probe);
    ck_assert(!cdn_health_failure(&h, &cfg, 100, false));
    ck_assert(!cdn_health_failure(&h, &cfg, 100, false));
    cdn_health_success(&h, false); /* resets the streak */
    ck_assert(!cdn_health_failure(&h, &cfg, 100, false));
    ck_assert(!cdn_health_failure(&h, &cfg, 100, false));
    ck_assert(cdn_health_failure(&h, &cfg, 100, false)); /* third in a row: down */
    ck_assert(!cdn_health_is_up(&h));
    ck_assert_uint_eq(atomic_load(&h.state_changes), 1);
    ck_assert(!cdn_health_usable(&h, 500, &probe)); /* backing off */
    ck_assert(!cdn_health_usable(&h, 1099, &probe));
    /* back-off over: exactly one probe */
    ck_assert(cdn_health_usable(&h, 1100, &probe) && probe);
    bool other;
    ck_assert(!cdn_health_usable(&h, 1100, &other));
    ck_assert(cdn_health_success(&h, true));
    ck_assert(cdn_health_is_up(&h));
    ck_assert_uint_eq(atomic_load(&h.state_changes), 2);
    ck_assert(cdn_health_usable(&h, 1200, &probe) && !probe);
}
END_TEST

START_TEST(failed_probe_doubles_backoff)
{
    struct cdn_health h;
    cdn_health_init(&h);
    bool probe;
    for (int i = 0; i < 3; i++)
        cdn_health_failure(&h, &cfg, 0, false);
    ck_assert(!cdn_health_is_up(&h));
    ck_assert(cdn_health_usable(&h, 1000, &probe) && probe);
    ck_assert(!cdn_health_failure(&h, &cfg, 1000, true)); /* still down, no state change */
    ck_assert(!cdn_health_usable(&h, 2999, &probe));      /* 2 s now */
    ck_assert(cdn_health_usable(&h, 3000, &probe) && probe);
    cdn_health_failure(&h, &cfg, 3000, true);
    ck_assert(!cdn_health_usable(&h, 6999, &probe)); /* 4 s */
    ck_assert(cdn_health_usable(&h, 7000, &probe) && probe);
    for (uint64_t t = 7000, i = 0; i < 10; i++) { /* capped at 16 x */
        cdn_health_failure(&h, &cfg, t, true);
        ck_assert(cdn_health_usable(&h, t + 16000, &probe));
        t += 16000;
    }
    /* a failure that is not the probe's (a request already in flight) does not extend the back-off */
    ck_assert_uint_eq(atomic_load(&h.state_changes), 1);
}
END_TEST

static struct cdn_health shared;

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        bool probe;
        if (cdn_health_usable(&shared, (uint64_t)i, &probe)) {
            if (i % 3 == 0)
                cdn_health_failure(&shared, &cfg, (uint64_t)i, probe);
            else
                cdn_health_success(&shared, probe);
        }
    }
    return NULL;
}

START_TEST(concurrent_workers)
{
    cdn_health_init(&shared);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    /* transitions alternate: an even count means up, odd means down */
    ck_assert_uint_eq(atomic_load(&shared.state_changes) % 2 == 0, cdn_health_is_up(&shared));
}
END_TEST

Suite *suite_health(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("health");
    tcase_add_test(tc, down_after_threshold_and_back);
    tcase_add_test(tc, failed_probe_doubles_backoff);
    tcase_add_test(tc, concurrent_workers);
    suite_add_tcase(s, tc);
    return s;
}
