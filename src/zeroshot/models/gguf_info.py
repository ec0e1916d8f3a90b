"""What a GGUF file declares, read from its header before any model is opened.

Opening a GGUF with llama.cpp allocates buffers sized by the context and the vocabulary (a 262k
vocabulary at a 32k training context asks for 32 GiB of logits). Reading the header first lets the
loader pick a context, estimate the memory a load will take and refuse it with the estimate shown,
and recognise a truncated download, all in a fraction of a second and without llama.cpp.

`gguf.GGUFReader` parses every array into NumPy objects (about 10 s for a 49k vocabulary on this
machine), so the header is walked here with `struct`, skipping the arrays (token lists, merges) it
does not need; block sizes of the quantised types come from the `gguf` package.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zeroshot.errors import UserError

_MAGIC = b"GGUF"
# GGUF value types: fixed-size scalars by struct code; 8 is a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFInfo:
    """The facts the loader needs, from a GGUF header."""

    path: str
    architecture: str
    name: str
    context_length: int  # the training context the file declares
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    key_length: int  # per head
    value_length: int
    n_vocab: int
    n_params: int  # elements of every tensor (tied embeddings counted once)
    weights_bytes: int  # bytes of tensor data
    file_bytes: int
    expected_bytes: int  # where the last tensor's data ends
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    add_bos_token: bool | None

    @property
    def truncated(self) -> bool:
        return self.file_bytes < self.expected_bytes

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Bytes of the f16 key/value cache at `n_ctx` tokens."""
        return 2 * self.n_layer * n_ctx * self.n_head_kv * (self.key_length + self.value_length)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("chat_template")
        data["has_chat_template"] = self.chat_template is not None
        return data


class _Cursor:
    def __init__(self, buf, path: str) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, code: str) -> Any:
        size = struct.calcsize("<" + code)
        if self.pos + size > len(self.buf):
            raise EOFError
        (value,) = struct.unpack_from("<" + code, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise EOFError
        raw = self.buf[self.pos: self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        """A scalar or string value; an array is skipped and its length returned (token lists, merges)."""
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, n = self.take("I"), self.take("Q")
            if item_kind in _SCALARS:
                self.pos += n * struct.calcsize("<" + _SCALARS[item_kind])
            elif item_kind == _STRING:
                for _ in range(n):
                    length = self.take("Q")  # (`self.pos += self.take(...)` would lose take's advance)
                    self.pos += length
            else:
                for _ in range(n):
                    self.value(item_kind)
            if self.pos > len(self.buf):
                raise EOFError
            return n
        raise ValueError(f"unknown GGUF value type {kind}")


def read_gguf_info(path: str | os.PathLike) -> GGUFInfo:
    """The header facts of the GGUF at `path`; `UserError` for a file that is not a complete GGUF."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    file_bytes = path.stat().st_size
    if file_bytes < 24:
        raise UserError(f"{path} is not a GGUF model: the file has only {file_bytes} bytes")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != _MAGIC:
            raise UserError(f"{path} is not a GGUF model (it does not start with 'GGUF')")
        cur = _Cursor(buf, str(path))
        try:
            cur.pos = 4
            version = cur.take("I")
            if version < 2:
                raise UserError(f"{path} is GGUF version {version}; llama.cpp reads versions 2 and 3")
            n_tensors, n_kv = cur.take("Q"), cur.take("Q")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string()
                meta[key] = cur.value(cur.take("I"))
            n_params = weights = end = 0
            for _ in range(n_tensors):
                cur.string()
                dims = [cur.take("Q") for _ in range(cur.take("I"))]
                ggml_type, offset = cur.take("I"), cur.take("Q")
                n = 1
                for d in dims:
                    n *= d
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
                nbytes = n // block * type_size
                n_params += n
                weights += nbytes
                end = max(end, offset + nbytes)
        except EOFError:
            raise UserError(f"{path} is truncated: its header ends early ({file_bytes:,} bytes); "
                            "download or assemble it again") from None
        except (ValueError, KeyError, struct.error) as exc:
            raise UserError(f"{path} is not a readable GGUF model: {exc}") from None
        alignment = int(meta.get("general.alignment", 32))
        data_start = (cur.pos + alignment - 1) // alignment * alignment
    arch = str(meta.get("general.architecture", "llama"))

    def arch_int(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # per-layer values (some architectures): the largest bounds memory
            value = max(value) if value else default
        return int(value)

    n_embd, n_head = arch_int("embedding_length"), arch_int("attention.head_count", 1) or 1
    head_dim = n_embd // n_head if n_head else 0
    return GGUFInfo(
        path=str(path),
        architecture=arch,
        name=str(meta.get("general.name", path.stem)),
        context_length=arch_int("context_length", 2048),
        n_layer=arch_int("block_count"),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=arch_int("attention.head_count_kv", n_head) or n_head,
        key_length=arch_int("attention.key_length", head_dim) or head_dim,
        value_length=arch_int("attention.value_length", head_dim) or head_dim,
        n_vocab=int(meta.get("tokenizer.ggml.tokens") or arch_int("vocab_size")),
        n_params=n_params,
        weights_bytes=weights,
        file_bytes=file_bytes,
        expected_bytes=data_start + end,
        chat_template=meta.get("tokenizer.chat_template"),
        bos_token_id=_opt_int(meta.get("tokenizer.ggml.bos_token_id")),
        eos_token_id=_opt_int(meta.get("tokenizer.ggml.eos_token_id")),
        add_bos_token=meta.get("tokenizer.ggml.add_bos_token"),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def check_complete(info: GGUFInfo) -> None:
    """`UserError` if the file ends before its last tensor does (an interrupted download or copy)."""
    if info.truncated:
        raise UserError(f"{info.path} is truncated: {info.file_bytes:,} bytes of the "
                        f"{info.expected_bytes:,} its header declares; download or assemble it again")
