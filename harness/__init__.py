"""llama-harness: does a llama.cpp release work, everywhere it ships, for your API, and how fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["LibraryDownloader", "__version__", "clean_library_cache", "load_library"]

if TYPE_CHECKING:
    from harness.library import LibraryDownloader, clean_library_cache, load_library


def __getattr__(name: str) -> Any:
    """Import the API lazily: the child process that loads a release needs none of it, and the
    CLI starts faster without it."""
    if name in ("LibraryDownloader", "clean_library_cache", "load_library"):
        from harness import library  # lazy: start-up of the CLI and of every child

        return getattr(library, name)
    raise AttributeError(name)
