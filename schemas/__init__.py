"""Avro schemas and the codec that reads and writes them."""
