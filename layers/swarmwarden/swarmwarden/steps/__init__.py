"""Use cases behind each function: parse nothing, call adapters, return contract models."""
