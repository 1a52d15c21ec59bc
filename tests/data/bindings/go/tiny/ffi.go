package tiny

import "github.com/jupiterrider/ffi"

var (
	ffiTypeLlamaTokenData = ffi.Type{
		Type: ffi.Struct,
		Elements: &[]*ffi.Type{
			&ffi.TypeSint32, // id
			&ffi.TypeFloat,  // logit
			&ffi.TypeFloat,  // p
			nil,
		}[0],
	}

	ffiTypeLlamaParams = ffi.Type{
		Type: ffi.Struct,
		Elements: &[]*ffi.Type{
			&ffi.TypeUint32,            // seed
			&ffi.TypeUint8,             // flag
			&ffi.TypeSint64,            // big
			&ffiTypeLlamaTokenData,     // data
			&ffi.TypeSlong,             // a C long: 4 bytes on Windows
			&ffi.TypePointer,
			nil,
		}[0],
	}

	ffiTypePair = ffi.NewType(&ffi.TypeUint16, &ffi.TypeDouble)
	ffiTypeOdd  = ffi.Type{Type: ffi.Struct, Elements: &[]*ffi.Type{&ffi.TypeMystery, nil}[0]}
)
