"""`upbit-cache serve`: a local server speaking Upbit's public quotation API over the store."""
