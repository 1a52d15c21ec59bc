/* Layouts that real llama.h releases do not (yet) use but a parser must get right:
   bitfields, anonymous members, untagged typedefs, packed and over-aligned records, unions,
   pointers to arrays and functions, a flexible array member, variadic functions. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef int32_t llama_token;

enum tricky_small { TRICKY_NEG = -2, TRICKY_B = 7 };
enum tricky_big { TRICKY_BIG = 0xFFFFFFFFu };
typedef enum { TRICKY_ANON_X = 1, TRICKY_ANON_Y } tricky_anon_enum;

struct tricky_opaque;
typedef void (*tricky_cb)(enum tricky_small level, const char * text, void * user);
typedef struct { uint16_t bits; } tricky_bf16;

struct tricky_bits {
    uint32_t a : 3;
    uint32_t b : 5;
    uint32_t c;
    uint8_t  d : 1;
    bool     e : 1;
    uint64_t f;
};

struct tricky_nested {
    char name[16];
    struct tricky_bits bits[2];
    tricky_bf16 half;
    union { int64_t i; double d; char s[12]; };
    struct { int8_t x; int16_t y; } point;
    struct { float u, v; };
    tricky_cb cb;
    struct tricky_opaque * handle;
    struct tricky_nested * next;
    const char * const * names;
    float (*matrix)[4];
    FILE * log;
    tricky_anon_enum which;
    int32_t tail[];
};

struct __attribute__((packed)) tricky_packed { uint8_t tag; uint32_t value; uint16_t more; };
struct tricky_aligned { uint8_t x; _Alignas(16) uint8_t y; };
union tricky_union { uint8_t b; uint64_t q; float f[3]; };

struct tricky_nested llama_tricky_make(int32_t n, tricky_cb cb, ...);
size_t llama_tricky_size(const struct tricky_nested * n, enum tricky_big big);
struct tricky_packed llama_tricky_packed(uint32_t value);
void llama_tricky_not_exported(void);
int not_ours(void);
