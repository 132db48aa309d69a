"""The seed's monitoring priorities measured across processes: definitions and observe helpers.

Each app keeps its own process metrics (`booking_api.metrics`, `booking_consumers.metrics`, ...); the
latencies that span processes (requested -> booked, LIS receipt -> visible -> notified) are defined here
once, so every process that observes a stage uses the same name, labels and buckets.
"""
