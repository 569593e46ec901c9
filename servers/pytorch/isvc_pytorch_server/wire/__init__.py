"""gRPC wire formats: the .proto files here, compiled to *_pb2.py / *_pb2_grpc.py at build time.

The protos are minimal subsets of TF Serving's and the Open Inference Protocol's: package,
message and service names and field numbers as upstream, so their clients interoperate; the
generated modules are not committed (run-tests.sh and the Dockerfile run compile-protos.sh).
"""
