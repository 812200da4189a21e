"""DataRobot's Prediction API: the request encoder (``codec``) and the response decoder (``response``)."""
