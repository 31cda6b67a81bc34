"""The workloads project: the model catalog deployed as KServe InferenceServices (its own Pulumi project,
`workloads/Pulumi.yaml`), reading the platform stack's outputs. The model server it runs lives in
`workloads/serving/` with its own environment."""
