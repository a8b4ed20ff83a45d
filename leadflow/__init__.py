"""leadflow: real-time lead routing on Kafka."""
