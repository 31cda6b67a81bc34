"""The modelyard model server: sentence embeddings behind KServe v1, Open Inference Protocol v2 and the
OpenAI embeddings API; front processes for HTTP and tokenization, one model owner per device, batching
across them. Its own image and requirements (kserve, used by the tests as a client, brings protobuf 6,
which the Pulumi environment cannot have)."""

__version__ = "1.1.0"
