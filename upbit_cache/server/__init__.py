"""`upbit-cache serve`: Upbit's public API over the store, and its WebSocket relay."""
