"""A binding's own declarations (read from its source, never run) checked against a release's ABI."""
