"""The gRPC layer: servicers, the per-call guard, and the error mapping."""
