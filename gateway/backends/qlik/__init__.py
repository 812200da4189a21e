"""Qlik Predict's real-time API: the request encoder (``codec``) and the response decoder (``response``)."""
