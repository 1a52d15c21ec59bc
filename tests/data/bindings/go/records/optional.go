package records

// bindOptional's registrar is not defined here either; its argument order is learnt from a
// call that passes a function variable's address and a string literal.
func bindOptional(h uintptr, name string, fptr interface{}) {
	registerOptional(h, name, fptr)
}

func warmup(h uintptr) {
	registerOptional(h, "llama_warmup", &llamaFree)
}
