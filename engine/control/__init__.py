"""The control protocol: the service's loopback door, its commands, the client."""
