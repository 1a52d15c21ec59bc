"""The suites run against every host-runnable cell: conformance now, throughput next."""
