"""The HTTP service: `create_app(settings)` builds the FastAPI app that `zeroshot serve` runs.

Layout: `app` (assembly, errors, health/info, the page), `routes_text`, `openai_compat`,
`routes_vision` (thin request/response code), `generation` and `image_inputs` (shared request handling),
`resources` (models and their worker threads), `batching` (the micro-batcher), `security`, `settings`,
`streaming` (server-sent events), `background` (run a server in a thread).
"""

from zeroshot.server.app import create_app
from zeroshot.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
