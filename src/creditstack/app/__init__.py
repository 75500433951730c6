"""Entry points: FastAPI app factories, the Typer CLI and (later) the web console."""
