"""Data-set stages: manifests, the identity-grouped split, background variants."""
