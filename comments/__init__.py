"""A self-hosted comments service: Twisted nodes over PostgreSQL partitioned by concern and forum."""

__version__ = "0.1.0"
