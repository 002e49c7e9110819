"""Pure domain logic: no I/O, unit-tested."""
