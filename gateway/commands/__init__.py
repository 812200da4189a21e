"""The sub-commands besides ``run`` (``gateway.app``): check, schema, batch, replay and demo."""
