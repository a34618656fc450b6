"""The REST API (DRF): views, serializers, authentication, one error handler, limits."""
