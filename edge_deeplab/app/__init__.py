"""Layer 6: the edge-deeplab CLI (cli.py, commands/) and the quickstart orchestration (quickstart/); the only package that may import everything."""
