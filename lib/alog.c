/* alog: see alog.h. A compiled format is a list of literal runs and variable references. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alog.h"
#include "lib/util.h"

static const char *const var_names[] = {
#define X(name, doc) #name,
    CDN_ALOG_VARS(X)
#undef X
};
static const char *const var_docs[] = {
#define X(name, doc) doc,
    CDN_ALOG_VARS(X)
#undef X
};

struct alog_part {
    int var; /* -1 = literal */
    char *text;
    size_t len;
};

struct cdn_alog {
    struct alog_part *parts;
    size_t n;
};

const char *cdn_alog_var_name(enum cdn_alog_var i)
{
    return var_names[i];
}

const char *cdn_alog_var_doc(enum cdn_alog_var i)
{
    return var_docs[i];
}

bool cdn_alog_uses(const struct cdn_alog *a, enum cdn_alog_var i)
{
    for (size_t k = 0; k < a->n; k++) {
        if (a->parts[k].var == (int)i)
            return true;
    }
    return false;
}

static void add(struct cdn_alog *a, int var, const char *text, size_t len)
{
    if (var < 0 && len == 0)
        return;
    if (var < 0 && a->n > 0 && a->parts[a->n - 1].var < 0) { /* "$$" splits literals: join them */
        struct alog_part *p = &a->parts[a->n - 1];
        p->text = cdn_xrealloc(p->text, p->len + len + 1);
        memcpy(p->text + p->len, text, len);
        p->len += len;
        p->text[p->len] = '\0';
        return;
    }
    a->parts = cdn_xrealloc(a->parts, (a->n + 1) * sizeof(*a->parts));
    a->parts[a->n++] =
        (struct alog_part){.var = var, .text = var < 0 ? cdn_xstrndup(text, len) : NULL, .len = len};
}

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

int cdn_alog_compile(const char *fmt, struct cdn_alog **out, char **err)
{
    struct cdn_alog *a = cdn_xcalloc(1, sizeof(*a));
    const char *p = fmt, *lit = fmt;
    while (*p != '\0') {
        if (*p != '$') {
            p++;
            continue;
        }
        add(a, -1, lit, (size_t)(p - lit));
        const char *name = p + 1, *end;
        if (*name == '$') {
            add(a, -1, "$", 1);
            lit = p = name + 1;
            continue;
        }
        bool braced = *name == '{';
        if (braced)
            name++;
        for (end = name; name_char(*end); end++)
            ;
        if (end == name || (braced && *end != '}')) {
            *err = cdn_xasprintf("at offset %zu: expected a variable name after '$'%s", (size_t)(p - fmt),
                                 braced ? " and '}'" : " (write $$ for a dollar sign)");
            cdn_alog_free(&a);
            return -1;
        }
        int var = -1;
        for (int i = 0; i < CDN_ALOG_NVARS && var < 0; i++) {
            if (strlen(var_names[i]) == (size_t)(end - name) &&
                memcmp(var_names[i], name, (size_t)(end - name)) == 0)
                var = i;
        }
        if (var < 0) {
            *err = cdn_xasprintf("unknown variable $%.*s (known: see docs/CONFIG.md, log.access_format)",
                                 (int)(end - name), name);
            cdn_alog_free(&a);
            return -1;
        }
        add(a, var, NULL, 0);
        lit = p = end + (braced ? 1 : 0);
    }
    add(a, -1, lit, (size_t)(p - lit));
    *out = a;
    return 0;
}

void cdn_alog_free(struct cdn_alog **ap)
{
    struct cdn_alog *a = *ap;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->parts[i].text);
    free(a->parts);
    free(a);
    *ap = NULL;
}

static void put_escaped(struct cdn_buf *out, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            continue;
        cdn_buf_append(out, v + run, i - run);
        char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
        cdn_buf_append(out, esc, 4);
        run = i + 1;
    }
    cdn_buf_append(out, v + run, n - run);
}

void cdn_alog_render(const struct cdn_alog *a, const char *const v[CDN_ALOG_NVARS],
                     const size_t len[CDN_ALOG_NVARS], struct cdn_buf *out)
{
    for (size_t i = 0; i < a->n; i++) {
        const struct alog_part *p = &a->parts[i];
        if (p->var < 0) {
            cdn_buf_append(out, p->text, p->len);
            continue;
        }
        const char *s = v[p->var];
        size_t n = s == NULL ? 0 : len[p->var] == SIZE_MAX ? strlen(s) : len[p->var];
        if (s == NULL || n == 0)
            cdn_buf_append(out, "-", 1);
        else
            put_escaped(out, s, n);
    }
}
