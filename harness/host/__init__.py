"""This host: what it is (OS, CPU, GPU runtimes) and which builds it can run."""
