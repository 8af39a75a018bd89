"""mmpipe deployments: prefect.yaml (the description) and serve.py (serve it, or prepare a server for it)."""
