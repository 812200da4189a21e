"""The vendor API layer: request encoders, response decoders and failure classes per scoring API."""
