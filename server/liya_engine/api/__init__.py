"""The gRPC layer: servicers, the interceptor, and the error mapping."""
