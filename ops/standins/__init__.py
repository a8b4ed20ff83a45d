"""Local stand-ins for third-party services (CRMs), faithful to their public API contracts."""
