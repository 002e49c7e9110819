"""The embedded, trainable custom-labels model and its S3 registry."""
