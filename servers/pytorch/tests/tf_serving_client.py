"""A TF Serving gRPC client built only from modules generated from TensorFlow's and TF Serving's
own .proto files (the tensorflow-protobuf package, which ships them without TensorFlow), never
from this server's protos.

It runs in a process of its own because both sets of modules define the same message names
(tensorflow.serving.ModelSpec, ...) and one process's protobuf descriptor pool refuses a name twice.

    python tf_serving_client.py call HOST:PORT < calls.json   # [{"name", "version", "fields", "no_spec"}]
    python tf_serving_client.py describe < names.json         # {"messages": [...], "services": [...]}

Each prints one JSON document: per call {"reply": GetModelMetadataResponse as JSON, with every
field} or {"code": "NOT_FOUND", "details": "..."}; for describe, each named message's fields and
each named service's methods as upstream defines them.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2, prediction_service_pb2_grpc


def call(target: str, calls: list[dict]) -> list[dict]:
    results = []
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for c in calls:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=c.get("fields", []))
            if not c.get("no_spec"):
                request.model_spec.name = c["name"]
                if c.get("version") is not None:
                    request.model_spec.version.value = c["version"]
            try:
                reply = stub.GetModelMetadata(request, timeout=30)
            except grpc.RpcError as e:
                results.append({"code": e.code().name, "details": e.details()})
                continue
            results.append(
                {
                    "reply": json_format.MessageToDict(
                        reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                    ),
                    "type_urls": {k: v.type_url for k, v in reply.metadata.items()},
                }
            )
    return results


def describe(messages: list[str], services: list[str]) -> dict:
    pool = descriptor_pool.Default()
    assert prediction_service_pb2.DESCRIPTOR.name == "tensorflow_serving/apis/prediction_service.proto"
    out: dict = {"messages": {}, "services": {}}
    for name in messages:
        d = pool.FindMessageTypeByName(name)
        out["messages"][name] = {f.name: field_facts(f) for f in d.fields}
    for name in services:
        s = pool.FindServiceByName(name)
        out["services"][name] = {m.name: [m.input_type.full_name, m.output_type.full_name] for m in s.methods}
    return out


def field_facts(f) -> list:
    """What the wire depends on: number, type, repeated or not, the message/enum type, the oneof."""
    kind = f.message_type or f.enum_type
    oneof = f.containing_oneof.name if f.containing_oneof else ""
    return [f.number, f.type, f.is_repeated, kind.full_name if kind else "", oneof]


if __name__ == "__main__":
    doc = json.load(sys.stdin)
    if sys.argv[1] == "call":
        print(json.dumps(call(sys.argv[2], doc)))
    else:
        print(json.dumps(describe(doc["messages"], doc["services"])))
