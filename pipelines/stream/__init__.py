"""The streaming stage: event contracts, producer-side privacy, the Flink aggregation job, its JVM
parser."""
