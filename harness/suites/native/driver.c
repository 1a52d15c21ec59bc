/*
 * The native twin of harness.suites.throughput: the same decode loop, in C, on the same library
 * and model, so that harness t/s / native t/s says what the Python binding costs.
 *
 * Compiled once per release against that release's own llama.h (struct layouts differ between
 * releases), with -D macros that harness.native derives from the parsed header, the same facts the
 * Python side uses to pick an API flavour:
 *
 *   FN_LOAD_MODEL FN_FREE_MODEL FN_NEW_CONTEXT FN_N_VOCAB FN_KV_CLEAR   function names
 *   BATCH_GET_ONE_ARGS=2|4  BACKEND_INIT_ARGS=0|1                       argument counts
 *   HAS_VOCAB_API HAS_MEMORY_API HAS_SYNCHRONIZE HAS_SET_N_THREADS HAS_LOG_SET
 *   HAS_BACKEND_INIT HAS_LOAD_ALL_FROM_PATH HAS_LOAD_ALL                 declared or not
 *   CTX_HAS_<FIELD> MP_HAS_N_GPU_LAYERS                                 struct fields
 *
 * The libraries are dlopen()ed by absolute path with RTLD_GLOBAL in the order harness.load uses
 * (ggml-base, ggml, llama), and every function is dlsym()ed into a pointer typed from the header
 * with __typeof__, so nothing links against the release and no RUNPATH matters.
 *
 *   driver GGML_BASE|- GGML|- LLAMA LIBDIR MODEL N_PROMPT N_GEN REPS WARMUP THREADS GPU_LAYERS
 *
 * prints one JSON object: {"n_vocab", "n_ctx", "flash_attn", "tests": {"pp<N>": {"tokens",
 * "seconds": [...]}, "tg<N>": {...}}}. Timing: CLOCK_MONOTONIC (what Python's perf_counter reads on
 * Linux) around llama_decode + llama_synchronize only; the batch is built before the clock starts.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define PTR(name) __typeof__(&name)

static void *must(const char *name) {
    void *p = dlsym(RTLD_DEFAULT, name);
    if (!p) {
        fprintf(stderr, "driver: symbol %s not found: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

#define BIND(var, name) var = (__typeof__(var))must(STR(name))

static PTR(FN_LOAD_MODEL) load_model;
static PTR(FN_FREE_MODEL) free_model;
static PTR(FN_NEW_CONTEXT) new_context;
static PTR(FN_N_VOCAB) n_vocab_of;
static PTR(llama_model_default_params) model_defaults;
static PTR(llama_context_default_params) context_defaults;
static PTR(llama_batch_get_one) batch_get_one;
static PTR(llama_decode) decode;
static PTR(llama_free) free_context;
#ifdef HAS_VOCAB_API
static PTR(llama_model_get_vocab) get_vocab;
#endif
#ifdef HAS_MEMORY_API
static PTR(llama_get_memory) get_memory;
static PTR(llama_memory_clear) memory_clear;
#else
static PTR(FN_KV_CLEAR) kv_clear;
#endif
#ifdef HAS_SYNCHRONIZE
static PTR(llama_synchronize) synchronize;
#endif
#ifdef HAS_SET_N_THREADS
static PTR(llama_set_n_threads) set_n_threads;
#endif

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level;
    (void)text;
    (void)user;
}

static void *open_lib(const char *path) {
    if (strcmp(path, "-") == 0) return NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        fprintf(stderr, "driver: cannot load %s: %s\n", path, dlerror());
        exit(2);
    }
    return h;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The same tokens as harness.suites.throughput.bench_tokens: no special ids, no randomness. */
static llama_token token_at(int i, int n_vocab) { return 3 + (llama_token)((i * 31) % (n_vocab - 3)); }

static void clear(struct llama_context *ctx) {
#ifdef HAS_MEMORY_API
    memory_clear(get_memory(ctx), true);
#else
    kv_clear(ctx);
#endif
}

static double timed_decode(struct llama_context *ctx, llama_token *tokens, int n, int pos) {
#if BATCH_GET_ONE_ARGS == 4
    struct llama_batch batch = batch_get_one(tokens, n, pos, 0);
#else
    (void)pos;
    struct llama_batch batch = batch_get_one(tokens, n);
#endif
    double t0 = now();
    int rc = decode(ctx, batch);
#ifdef HAS_SYNCHRONIZE
    synchronize(ctx);
#endif
    double dt = now() - t0;
    if (rc != 0) {
        fprintf(stderr, "driver: llama_decode returned %d\n", rc);
        exit(3);
    }
    return dt;
}

static double run_pp(struct llama_context *ctx, llama_token *tokens, int n_prompt) {
    clear(ctx);
    return timed_decode(ctx, tokens, n_prompt, 0);
}

static double run_tg(struct llama_context *ctx, llama_token *tokens, int n_gen) {
    double total = 0.0;
    clear(ctx);
    for (int i = 0; i < n_gen; i++) total += timed_decode(ctx, tokens + i, 1, i);
    return total;
}

static void print_series(const char *kind, int n, const double *secs, int reps, int comma) {
    printf("\"%s%d\": {\"tokens\": %d, \"seconds\": [", kind, n, n);
    for (int r = 0; r < reps; r++) printf("%s%.9f", r ? ", " : "", secs[r]);
    printf("]}%s", comma ? ", " : "");
}

int main(int argc, char **argv) {
    if (argc != 12) {
        fprintf(stderr,
                "usage: %s GGML_BASE|- GGML|- LLAMA LIBDIR MODEL N_PROMPT N_GEN REPS WARMUP "
                "THREADS GPU_LAYERS\n",
                argv[0]);
        return 2;
    }
    const char *libdir = argv[4], *model_path = argv[5];
    int n_prompt = atoi(argv[6]), n_gen = atoi(argv[7]), reps = atoi(argv[8]);
    int warmup = atoi(argv[9]), threads = atoi(argv[10]), gpu_layers = atoi(argv[11]);
    if (reps < 1 || n_prompt < 0 || n_gen < 0 || threads < 1) {
        fprintf(stderr, "driver: bad arguments\n");
        return 2;
    }
    open_lib(argv[1]);
    open_lib(argv[2]);
    open_lib(argv[3]);

    BIND(load_model, FN_LOAD_MODEL);
    BIND(free_model, FN_FREE_MODEL);
    BIND(new_context, FN_NEW_CONTEXT);
    BIND(n_vocab_of, FN_N_VOCAB);
    BIND(model_defaults, llama_model_default_params);
    BIND(context_defaults, llama_context_default_params);
    BIND(batch_get_one, llama_batch_get_one);
    BIND(decode, llama_decode);
    BIND(free_context, llama_free);
#ifdef HAS_VOCAB_API
    BIND(get_vocab, llama_model_get_vocab);
#endif
#ifdef HAS_MEMORY_API
    BIND(get_memory, llama_get_memory);
    BIND(memory_clear, llama_memory_clear);
#else
    BIND(kv_clear, FN_KV_CLEAR);
#endif
#ifdef HAS_SYNCHRONIZE
    BIND(synchronize, llama_synchronize);
#endif
#ifdef HAS_SET_N_THREADS
    BIND(set_n_threads, llama_set_n_threads);
#endif

#ifdef HAS_LOG_SET
    PTR(llama_log_set) log_set;
    BIND(log_set, llama_log_set);
    log_set(quiet, NULL);
#endif
#if defined(HAS_LOAD_ALL_FROM_PATH)
    PTR(ggml_backend_load_all_from_path) load_all_from_path;
    BIND(load_all_from_path, ggml_backend_load_all_from_path);
    load_all_from_path(libdir);
#elif defined(HAS_LOAD_ALL)
    PTR(ggml_backend_load_all) load_all;
    BIND(load_all, ggml_backend_load_all);
    load_all();
#else
    (void)libdir;
#endif
#ifdef HAS_BACKEND_INIT
    PTR(llama_backend_init) backend_init;
    BIND(backend_init, llama_backend_init);
#if BACKEND_INIT_ARGS == 1
    backend_init(false);
#else
    backend_init();
#endif
#endif

    struct llama_model_params mp = model_defaults();
#ifdef MP_HAS_N_GPU_LAYERS
    mp.n_gpu_layers = gpu_layers;
#else
    (void)gpu_layers;
#endif
    struct llama_model *model = load_model(model_path, mp);
    if (!model) {
        fprintf(stderr, "driver: %s returned NULL for %s\n", STR(FN_LOAD_MODEL), model_path);
        return 3;
    }
#ifdef HAS_VOCAB_API
    int n_vocab = (int)n_vocab_of(get_vocab(model));
#else
    int n_vocab = (int)n_vocab_of(model);
#endif
    int n_ctx = n_prompt + n_gen;
    struct llama_context_params cp = context_defaults();
#ifdef CTX_HAS_N_CTX
    cp.n_ctx = (uint32_t)n_ctx;
#endif
#ifdef CTX_HAS_N_BATCH
    cp.n_batch = (uint32_t)n_ctx;
#endif
#ifdef CTX_HAS_N_UBATCH
    cp.n_ubatch = (uint32_t)n_ctx;
#endif
#ifdef CTX_HAS_N_SEQ_MAX
    cp.n_seq_max = 1;
#endif
#ifdef CTX_HAS_N_THREADS
    cp.n_threads = threads;
#endif
#ifdef CTX_HAS_N_THREADS_BATCH
    cp.n_threads_batch = threads;
#endif
    const char *flash = "n/a";
#if defined(CTX_HAS_FLASH_ATTN_TYPE)
    flash = cp.flash_attn_type < 0 ? "auto" : cp.flash_attn_type == 0 ? "off" : "on";
#elif defined(CTX_HAS_FLASH_ATTN)
    flash = cp.flash_attn ? "on" : "off";
#endif
    struct llama_context *ctx = new_context(model, cp);
    if (!ctx) {
        fprintf(stderr, "driver: %s returned NULL\n", STR(FN_NEW_CONTEXT));
        return 3;
    }
#ifdef HAS_SET_N_THREADS
    set_n_threads(ctx, threads, threads);
#endif

    int n_tokens = n_prompt > n_gen ? n_prompt : n_gen;
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t)(n_tokens + 1));
    double *pp = malloc(sizeof(double) * (size_t)reps), *tg = malloc(sizeof(double) * (size_t)reps);
    if (!tokens || !pp || !tg) return 4;
    for (int i = 0; i < n_tokens; i++) tokens[i] = token_at(i, n_vocab);

    if (n_prompt > 0) {
        for (int r = 0; r < warmup; r++) run_pp(ctx, tokens, n_prompt);
        for (int r = 0; r < reps; r++) pp[r] = run_pp(ctx, tokens, n_prompt);
    }
    if (n_gen > 0) {
        for (int r = 0; r < warmup; r++) run_tg(ctx, tokens, n_gen);
        for (int r = 0; r < reps; r++) tg[r] = run_tg(ctx, tokens, n_gen);
    }
    printf("{\"n_vocab\": %d, \"n_ctx\": %d, \"flash_attn\": \"%s\", \"tests\": {", n_vocab, n_ctx,
           flash);
    if (n_prompt > 0) print_series("pp", n_prompt, pp, reps, n_gen > 0);
    if (n_gen > 0) print_series("tg", n_gen, tg, reps, 0);
    printf("}}\n");
    fflush(stdout);
    free_context(ctx);
    free_model(model);
    /* Skip static destructors: some releases crash at exit; the result is already out. */
    _Exit(0);
}
