"""Simulation bots: agents that trade through the real WebSocket API, and the stress driver."""
