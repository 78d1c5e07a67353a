"""Learning from the event log: bid landscapes and shading, funnel rates, intent retraining."""
