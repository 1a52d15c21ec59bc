"""The cache: lock-protected, verified, atomically written; safe extraction; digests."""
