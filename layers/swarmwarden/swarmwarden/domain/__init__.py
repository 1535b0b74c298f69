"""Pure domain rules: no I/O, no AWS, fully typed and property-tested."""
