"""Infrastructure: configuration, paths, the local Kafka broker, the local cluster, secret redaction."""
