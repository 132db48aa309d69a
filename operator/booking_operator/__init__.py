"""The booking operator: the BookingPlatform spec model, pure renderer and the Kopf reconciler."""
