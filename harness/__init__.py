"""llama-harness: does a llama.cpp release work, everywhere it ships, for your API, and how fast."""

from __future__ import annotations

__version__ = "0.1.0"

from harness.api import LibraryDownloader, clean_library_cache

__all__ = ["LibraryDownloader", "__version__", "clean_library_cache"]
