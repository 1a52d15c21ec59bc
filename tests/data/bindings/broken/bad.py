import ctypes

class llama_batch(ctypes.Structure:
    _fields_ = []
