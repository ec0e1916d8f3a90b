"""Semantic image search: the index of a collection (`ImageIndex`, and the one rule for which CLIP an
index was built with), incremental indexing in one process or on Ray, the catalog and vector stores
(FAISS, Milvus), and HTML contact sheets of results."""
