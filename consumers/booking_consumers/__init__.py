"""The nine Kafka consumers: one poll loop (`runtime`), one handler module per consumer (`handlers`)."""
