"""swarmwarden: the shared library deployed as a Lambda layer (domain rules, AWS adapters, host scripts)."""
