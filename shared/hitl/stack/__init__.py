"""The local stack: the embedded defaults on one machine, on loopback only."""
