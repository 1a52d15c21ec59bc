package bad

var llamaDecode func(ctx uintptr int32
