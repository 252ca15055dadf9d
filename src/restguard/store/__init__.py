"""Storage: one small Protocol per artifact (ports.py) and the drivers behind them."""
