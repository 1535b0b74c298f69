"""The local cloud: swarmwarden's AWS side emulated on one Linux machine, with real dockerd hosts."""
