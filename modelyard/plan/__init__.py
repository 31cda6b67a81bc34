"""The offline plan engine: run the Pulumi programs under mocks and emit a PreviewDigest."""
