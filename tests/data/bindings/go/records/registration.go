// Package records registers its functions from a table, as gollama.cpp's
// function_registration.go does; registerLibFunc lives in per-OS files not included here.
package records

type FunctionRegistration struct {
	FunctionPtr interface{}
	Name        string
	Required    bool
}

func RegisterFunctionSet(libHandle uintptr, functions []FunctionRegistration) {
	for _, fn := range functions {
		if fn.Required {
			registerLibFunc(fn.FunctionPtr, libHandle, fn.Name)
		} else {
			_ = tryRegisterLibFunc(fn.FunctionPtr, libHandle, fn.Name)
		}
	}
}

var (
	llamaFree     func(ctx uintptr)
	llamaNCtx     func(ctx uintptr) uint32
	llamaVocabBos func(vocab uintptr) int32
	ggmlTypeSize  func(typ int32) uint64
)

func setup(h uintptr) {
	RegisterFunctionSet(h, []FunctionRegistration{
		{FunctionPtr: &llamaFree, Name: "llama_free", Required: true},
		{Name: "llama_n_ctx", FunctionPtr: &llamaNCtx},
		{&llamaVocabBos, "llama_vocab_bos", false},
	})
	bindOptional(h, "ggml_type_size", &ggmlTypeSize)
}
