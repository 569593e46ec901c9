"""isvc-pytorch-server: a small, fast PyTorch model server speaking TF Serving's REST v1 and KServe's v2."""

__version__ = "0.1.0"
