"""Amazon A2I set-up on AWS: human task UIs kept in the repository, flow definitions, events."""
