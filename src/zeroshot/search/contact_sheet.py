"""An HTML contact sheet of search results: one self-contained file, thumbnails inlined as JPEG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

from zeroshot.search.index import SearchHit

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }
h1 { font-size: 1.2rem; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(%(side)spx, 1fr)); gap: 1rem; }
figure { margin: 0; background: white; border: 1px solid #ddd; border-radius: 6px; padding: .5rem; }
figure img { width: 100%%; height: %(side)spx; object-fit: contain; background: #eee; }
figcaption { font-size: .8rem; overflow-wrap: anywhere; }
.score { font-weight: 600; font-variant-numeric: tabular-nums; }
.missing { height: %(side)spx; display: flex; align-items: center; justify-content: center; color: #a00; }
"""


def render_contact_sheet(hits: Sequence[SearchHit], query: str, thumbnail_side: int = 192) -> str:
    """The page for `hits` of a search for `query` (text, or the name of the query image)."""
    cards = []
    for rank, hit in enumerate(hits, 1):
        picture = _thumbnail(hit.path, thumbnail_side)
        image = (f'<img src="data:image/jpeg;base64,{picture}" alt="">' if picture
                 else '<div class="missing">cannot read the file</div>')
        more = f"<br>+ {len(hit.duplicates)} identical" if hit.duplicates else ""
        cards.append(f'<figure>{image}<figcaption><span class="score">#{rank} &nbsp; {hit.score:.3f}</span>'
                     f'<br><a href="file://{html.escape(hit.path)}">{html.escape(hit.path)}</a>{more}'
                     "</figcaption></figure>")
    body = "\n".join(cards) if cards else "<p>No results.</p>"
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(query)}</title>"
            f"<style>{_STYLE % {'side': thumbnail_side}}</style></head><body>"
            f"<h1>{html.escape(query)} &mdash; {len(hits)} results</h1><div class=\"grid\">\n{body}\n"
            "</div></body></html>\n")


def _thumbnail(path: str, side: int) -> str | None:
    from zeroshot.vision.images import ImageError, load_image

    try:
        image = load_image(path)
    except ImageError:
        return None  # the file moved or changed since it was indexed; the card says so
    image.thumbnail((side * 2, side * 2))  # 2x for sharp thumbnails on high-density screens
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
