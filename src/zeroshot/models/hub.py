"""Whether the Hugging Face hub can be reached: asked once, quickly, before a hub download.

Without it an offline machine spends a minute in `huggingface_hub`'s retries (five per file, twice)
before the one sentence that says what to do; with it that sentence comes at once.
"""

from __future__ import annotations


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is on (`HF_HUB_OFFLINE`) or the hub's host does not answer within
    `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
