"""The embedded, trainable custom-labels model and its S3 registry.

Import the pieces from their modules (``hitl.model.training``, ``hitl.model.registry``, …): this
package's import stays light so that services which never touch the model do not load onnxruntime.
"""
