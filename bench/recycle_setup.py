"""Fetch the recycling corpora from Debian and turn them into folders of UTF-8 text (issue 16).

`apt-get download` + `dpkg -x` into .cache/debian/ (no root install), then per language
.cache/recycle/<lang>/{fortunes,manpages,reference}.txt, paragraphs separated by blank lines:
- fortunes-<lang>: one fortune per paragraph ("%" separators dropped);
- manpages-<lang>: roff markup stripped (requests, font escapes, comments), one section per paragraph;
- debian-reference-it: the plain-text edition shipped in the package.

    python -m bench.recycle_setup            # it, es, de
    python -m bench.recycle_setup --langs it
"""

from __future__ import annotations

import argparse
import gzip
import re
import subprocess
from pathlib import Path

PACKAGES = {
    "it": ["fortunes-it", "manpages-it", "debian-reference-it"],
    "es": ["fortunes-es", "manpages-es"],
    "de": ["fortunes-de", "manpages-de"],
}
CACHE = Path(".cache")

_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes \fB \fI \fR \f(CW \f[B]
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), ""),  # strings
    (re.compile(r"\\\((aq|cq|oq)"), "'"),
    (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\((em|en|hy)"), "-"),
    (re.compile(r"\\\[(aq|cq)\]"), "'"),
    (re.compile(r"\\\(bu"), "*"),
    (re.compile(r"\\\(co"), "(c)"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),  # other special characters
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[ ~0|^&)/,:%]"), lambda m: " " if m.group(0) in ("\\ ", "\\~", "\\0") else ""),
    (re.compile(r"\\e"), lambda m: "\\"),
    (re.compile(r"\\[a-zA-Z]"), ""),
]
_KEEP_ARGS = {"SH", "SS", "B", "I", "BI", "BR", "IB", "IR", "RB", "RI", "TP", "IP", "TH", "Nm", "Nd", "Sh"}


def strip_roff(source: str) -> str:
    """Plain text of a man page: comments and requests dropped, font/size escapes removed.

    Section headings and the text arguments of font macros (.B word) are kept; paragraph breaks
    (.PP, .SH, .TP, blank lines) become blank lines.
    """
    lines = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"", '\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            request = parts[0]
            if request in ("PP", "LP", "P", "SH", "SS", "TP", "IP", "sp", "br"):
                lines.append("")
            if request in _KEEP_ARGS and len(parts) > 1:
                args = parts[1]
                if request in ("TH",):
                    continue
                if request in ("IP", "TP") and args.startswith('"'):
                    args = args.strip('"')
                lines.append(args.replace('"', ""))
            continue
        lines.append(line)
    text = "\n".join(lines)
    for pattern, replacement in _ESCAPES:
        text = pattern.sub(replacement, text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def _fortunes(folder: Path) -> str:
    texts = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.suffix in (".dat", ".u8") or "off" in path.parts:
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        for entry in re.split(r"^%\s*$", text, flags=re.M):
            entry = re.sub(r"\n{2,}", "\n", entry.strip())
            if entry:
                texts.append(entry)
    return "\n\n".join(texts) + "\n"


def _manpages(folder: Path) -> str:
    pages = []
    for path in sorted(folder.rglob("*.gz")):
        try:
            raw = gzip.decompress(path.read_bytes())
        except OSError:
            continue
        source = raw.decode("utf-8", errors="replace")
        if source.lstrip().startswith(".so "):
            continue  # a link to another page
        pages.append(strip_roff(source))
    return "\n\n".join(pages)


def setup(langs: list[str]) -> None:
    debs, root = CACHE / "debian" / "debs", CACHE / "debian" / "root"
    debs.mkdir(parents=True, exist_ok=True)
    wanted = [p for lang in langs for p in PACKAGES[lang]]
    missing = [p for p in wanted if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    for lang in langs:
        out = CACHE / "recycle" / lang
        out.mkdir(parents=True, exist_ok=True)
        (out / "fortunes.txt").write_text(
            _fortunes(root / "usr/share/games/fortunes" / lang), encoding="utf-8"
        )
        (out / "manpages.txt").write_text(_manpages(root / "usr/share/man" / lang), encoding="utf-8")
        if lang == "it":
            reference = root / "usr/share/debian-reference/debian-reference.it.txt.gz"
            text = gzip.decompress(reference.read_bytes()).decode("utf-8")
            (out / "reference.txt").write_text(text, encoding="utf-8")
        sizes = {p.name: p.stat().st_size for p in sorted(out.glob("*.txt"))}
        print(lang, sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="it,es,de")
    args = parser.parse_args()
    setup(args.langs.split(","))


if __name__ == "__main__":
    main()
