"""The distributed vector store: a Milvus collection, through pymilvus's `MilvusClient`.

Give a server URI (`http://host:19530`, Zilliz Cloud) to scale past one machine; by default the store
is Milvus Lite, a file next to the catalog (`milvus.db`), which runs the same client API in-process.
The SQLite catalog stays the source of truth, so a collection that missed writes (a crash, a new
server) is brought back in step by id (`stores.sync`). `vectors.json`'s counterpart here is
`milvus.json`: the URI, the collection and the catalog version last flushed to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zeroshot.errors import UserError, first_line
from zeroshot.files import write_atomic
from zeroshot.numerics import batch_slices, batched
from zeroshot.optional import MILVUS

DEFAULT_COLLECTION = "zeroshot_images"
_WRITE_BATCH = 1_000


class MilvusStore:
    """Milvus behind the `VectorStore` interface (see the module docstring).

    `index_type` is Milvus's: "FLAT" (exact, the default: same answers as the embedded store), or
    "IVF_FLAT", "HNSW", "AUTOINDEX" on a server for large collections.
    """

    def __init__(self, folder: Path, dim: int, uri: str | None = None, collection: str = DEFAULT_COLLECTION,
                 token: str | None = None, index_type: str = "FLAT") -> None:
        pymilvus = MILVUS.load()
        DataType, MilvusClient = pymilvus.DataType, pymilvus.MilvusClient
        self.folder = Path(folder)
        self.dim = dim
        self.uri = uri or str(self.folder / "milvus.db")
        self.collection = collection
        self._state_path = self.folder / "milvus.json"
        self._version: int | None = None  # set by a `save` in this process
        try:
            self._client = MilvusClient(uri=self.uri, token=token or "")
            exists = self._client.has_collection(collection)
        except Exception as exc:  # noqa: BLE001 - pymilvus raises several types for "cannot connect"
            raise UserError(f"cannot open Milvus at {self.uri}: {first_line(exc)}") from exc
        if exists:
            self._check_dim()
        else:
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            index = MilvusClient.prepare_index_params()
            index.add_index("vector", index_type=index_type, metric_type="IP")
            self._client.create_collection(collection, schema=schema, index_params=index)
        self._client.load_collection(collection)

    def _check_dim(self) -> None:
        fields = self._client.describe_collection(self.collection)["fields"]
        dims = [int(f["params"]["dim"]) for f in fields if "dim" in f.get("params", {})]
        if dims and dims[0] != self.dim:
            raise UserError(f"Milvus collection {self.collection!r} at {self.uri} holds {dims[0]}-d vectors, "
                            f"this index {self.dim}-d: use another collection")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._version = None
        for part in batch_slices(len(ids), _WRITE_BATCH):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[part], vectors[part], strict=True)]
            self._client.upsert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> None:
        self._version = None
        for part in batched((int(i) for i in ids), _WRITE_BATCH):
            self._client.delete(self.collection, ids=part)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        results = self._client.search(self.collection, data=queries.tolist(), limit=max(1, k),
                                      search_params={"metric_type": "IP"}, anns_field="vector")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, hits in enumerate(results):
            for col, hit in enumerate(list(hits)[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def ids(self) -> np.ndarray:
        found: list[int] = []
        iterator = self._client.query_iterator(self.collection, batch_size=10_000, filter="id >= 0",
                                               output_fields=["id"])
        try:
            while page := iterator.next():
                found.extend(int(row["id"]) for row in page)
        finally:
            iterator.close()
        return np.unique(np.asarray(found, dtype=np.int64))

    def synced_version(self) -> int | None:
        if self._version is not None:
            return self._version
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return None
        if state.get("uri") != self.uri or state.get("collection") != self.collection:
            return None
        return int(state["version"])

    def save(self, version: int, durable: bool = True) -> None:
        self._client.flush(self.collection)
        self._version = version
        if not durable:
            return
        state = {"uri": self.uri, "collection": self.collection, "version": version}
        write_atomic(self._state_path, json.dumps(state))

    def needs_rebuild(self, count: int) -> bool:
        return False  # Milvus lays out and re-indexes its own segments

    def reset(self, count: int, training: np.ndarray) -> None:
        self.remove(self.ids())

    def close(self) -> None:
        self._client.close()

    def __len__(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])
