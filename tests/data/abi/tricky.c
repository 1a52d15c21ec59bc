#include <string.h>
#include "tricky.h"

struct tricky_nested llama_tricky_make(int32_t n, tricky_cb cb, ...) {
    struct tricky_nested r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "n=%d", n);
    r.bits[1].a = 5;
    r.bits[1].b = 17;
    r.bits[1].c = 123456;
    r.bits[1].d = 1;
    r.bits[1].e = true;
    r.bits[1].f = 1ull << 40;
    r.half.bits = 0x3c00;
    r.d = 2.5;
    r.point.x = -3;
    r.point.y = 300;
    r.u = 1.5f;
    r.v = -2.0f;
    r.cb = cb;
    r.which = TRICKY_ANON_Y;
    if (cb) cb(TRICKY_NEG, "made", NULL);
    return r;
}

size_t llama_tricky_size(const struct tricky_nested * n, enum tricky_big big) {
    return sizeof *n + (n != NULL) + (big == TRICKY_BIG);
}

struct tricky_packed llama_tricky_packed(uint32_t value) {
    struct tricky_packed p = {1, value, 2};
    return p;
}
