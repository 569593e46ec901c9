"""`python -m isvc_pytorch_server` runs the same command as `isvc-pytorch-server`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
