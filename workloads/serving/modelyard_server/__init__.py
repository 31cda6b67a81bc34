"""The modelyard model server: sentence embeddings behind KServe v1, Open Inference Protocol v2 and the
OpenAI embeddings API, with adaptive batching. Its own image and requirements (kserve brings
protobuf 6, which the Pulumi environment cannot have)."""
