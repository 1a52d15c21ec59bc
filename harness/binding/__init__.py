"""Binding check: what a binding declares, read from its source, against a release's ABI."""
