"""The review service: the A2I runtime API, self-hosted, with a reviewer portal (see README.md)."""
