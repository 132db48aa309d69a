"""HTTP routes: thin adapters from requests to the service functions."""

# Routers carry the full prefix themselves, so each route's path (the metrics label) is the whole template.
API_PREFIX = "/api/v1"
