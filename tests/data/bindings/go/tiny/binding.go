// Package tiny is a small purego binding written for the binding reader's tests.
package tiny

import (
	"unsafe"

	"github.com/ebitengine/purego"
)

type (
	LlamaToken   int32
	LlamaModel   uintptr
	LlamaContext uintptr
)

type LlamaVocabType int32

const (
	LLAMA_VOCAB_TYPE_NONE LlamaVocabType = iota
	LLAMA_VOCAB_TYPE_SPM
	LLAMA_VOCAB_TYPE_BPE
)

const (
	LLAMA_DEFAULT_SEED = 0xFFFFFFFF
	LLAMA_TOKEN_NULL   = -1
	LLAMA_SESSION_MAGIC = LLAMA_FILE_MAGIC_GGSN // declared further down
	LLAMA_FILE_MAGIC_GGSN = 0x6767_736e
	LLAMA_FLAG_B          = 1 << 3
	LLAMA_MASK            = LLAMA_FLAG_B | 0o7
	LLAMA_CHAR            = 'A'
	LLAMA_KEY_LEN         = 8
	LLAMA_RATIO           = 1.5 // not an int: left out
	libName               = "libllama.so"
	symDecode             = "llama_decode"
)

type LlamaTokenData struct {
	Id    LlamaToken
	Logit float32
	P     float32
}

type Inner struct {
	A uint16
	B uint64
}

// LlamaParams: offsets by Go's rules, worked out by hand in the test.
type LlamaParams struct {
	Seed     uint32
	Flag     bool
	Big      int64
	Weights  [4]float32
	Data     LlamaTokenData
	Tokens   *LlamaToken
	Raw      unsafe.Pointer
	Handle   uintptr
	Key      [LLAMA_KEY_LEN]byte
	Name     string
	Inner              // embedded
	Small, Other int8
	_        [0]int64 // zero-size last field: Go pads after it
}

var (
	llamaBackendInit   func()
	llamaDecode        func(ctx LlamaContext, params LlamaParams) int32
	llamaTokenize      func(ctx LlamaContext, text string, tokens *LlamaToken, n int32, special bool) int32
	llamaGetLogits     func(ctx LlamaContext) *float32
	llamaModelDesc     func(model LlamaModel, buf *byte, size uint64) int32
	llamaLogSet        func(cb func(level int32, text *byte), data unsafe.Pointer)
	llamaPrintf        func(format *byte, args ...uintptr) int32
	llamaSplit         func() (int32, error)
	llamaNeverBound    func() int32
	llamaDataByPointer func(data *LlamaTokenData)
)

var libHandle uintptr

// Functions as struct fields, registered through the struct.
type library struct {
	handle   uintptr
	nVocab   func(vocab uintptr) int32
	progress func(p float32) bool // a callback slot, never registered: not a C function
}

var lib library

// register puts its arguments in its own order: the reader must follow which is which.
func register(lib uintptr, name string, fptr interface{}) {
	purego.RegisterLibFunc(fptr, lib, name)
}

func load() {
	purego.RegisterLibFunc(&llamaBackendInit, libHandle, "llama_backend_init")
	purego.RegisterLibFunc(&llamaDecode, libHandle, symDecode)
	track := func(f interface{}, n string) {
		register(libHandle, n, f)
	}
	track(&llamaTokenize, "llama_tokenize")
	register(libHandle, "llama_get_logits", &llamaGetLogits)
	purego.RegisterFunc(&llamaModelDesc, purego.Dlsym(libHandle, "llama_model_desc"))
	track(unsafe.Pointer(&llamaLogSet), "llama_log_set")
	track(&llamaPrintf, "llama_printf")
	track(&llamaSplit, "llama_split")
	track(&llamaDataByPointer, "llama_data_by_pointer")
	purego.RegisterLibFunc(&lib.nVocab, lib.handle, "llama_n_vocab")
	var local func()
	track(&local, "llama_local")
}
