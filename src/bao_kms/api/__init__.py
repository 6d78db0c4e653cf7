"""The KMS v2 face of the provider: the servicer, the gRPC server on its Unix socket, a client."""
