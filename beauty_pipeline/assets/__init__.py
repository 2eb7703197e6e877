"""Software-defined assets, one module per group; thin wrappers around the domain code."""
