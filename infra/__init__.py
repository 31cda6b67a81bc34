"""The AWS layer: network, EKS, node capacity, model store, image registry."""
