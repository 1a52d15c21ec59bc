"""Loading a build: libraries by absolute path, ggml backends, the one child launcher."""
