"""protoc's output for fleet.proto, checked in as generated (regenerate as fleet.proto's header says)."""
