"""Property-based tests (Hypothesis) of the validators and loaders that face user input (issue 20).

Each property is the same promise: whatever the input, the answer is a value or the one error type a
user can act on (`UserError` and its kinds), never another exception, a hang or a crash.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from zeroshot.errors import UserError
from zeroshot.fewshot._validation import FewShotInputError, check_embeddings, check_targets
from zeroshot.server.guard import BadRequest, check_json_text
from zeroshot.server.security import resolve_under_roots
from zeroshot.server.settings import ServerSettings
from zeroshot.vision.images import ImageError, load_image

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=30)


@PROPERTY
@given(json_values)
def test_the_json_guard_accepts_or_refuses_with_400(value):
    text = json.dumps(value)
    try:
        check_json_text(text.encode("utf-8", "surrogatepass"))
    except BadRequest as exc:
        assert exc.status == 400


@PROPERTY
@given(st.binary(max_size=400))
def test_the_json_guard_never_fails_otherwise_on_bytes(data):
    try:
        check_json_text(data)
    except BadRequest:
        pass


@PROPERTY
@given(st.integers(min_value=1, max_value=200))
def test_nesting_beyond_the_limit_is_always_refused(depth):
    from zeroshot.server.guard import MAX_JSON_DEPTH

    text = "[" * depth + "]" * depth
    if depth > MAX_JSON_DEPTH:
        with pytest.raises(BadRequest):
            check_json_text(text.encode())
    else:
        check_json_text(text.encode())


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (5, 4), (10, 20, 30, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_are_an_rgb_image_or_an_image_error(data):
    try:
        image = load_image(data)
    except ImageError:
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_pngs_are_an_rgb_image_or_an_image_error(edits):
    data = bytearray(PNG)
    for position, value in edits:
        data[position] = value
    try:
        image = load_image(bytes(data))
    except ImageError:
        return
    assert image.mode == "RGB"


ROOT = Path(tempfile.mkdtemp(prefix="zeroshot-props-")).resolve()
(ROOT / "a.png").write_bytes(PNG)


@PROPERTY
@given(st.text(max_size=300) | st.text(alphabet="./~ab\\", max_size=40))
def test_any_path_text_resolves_inside_the_root_or_is_refused_with_4xx(text):
    try:
        real = resolve_under_roots(text, [ROOT])
    except UserError as exc:
        assert 400 <= exc.status_code < 500
        return
    assert real.is_relative_to(ROOT) and real.is_file()


@PROPERTY
@given(hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex64]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
def test_embeddings_are_finite_2d_floats_or_a_few_shot_input_error(array):
    try:
        checked = check_embeddings(array)
    except FewShotInputError:
        return
    assert checked.ndim == 2 and checked.dtype == np.float64 and np.isfinite(checked).all()


@PROPERTY
@given(st.lists(st.one_of(st.integers(-3, 3), st.floats(), st.text(max_size=3)), max_size=8))
def test_labels_are_checked_or_refused(labels):
    try:
        checked = check_targets(labels, len(labels))
    except (FewShotInputError, TypeError):  # mixed str/number lists: NumPy itself refuses them as TypeError
        return
    assert checked.shape == (len(labels),) and len(set(checked.tolist())) >= 2


@PROPERTY
@given(st.floats(), st.floats(), st.integers(-5, 5))
def test_server_settings_take_only_positive_finite_limits(upload, window, pixels):
    try:
        made = ServerSettings(max_upload_mb=upload, batch_window_ms=window, max_pixels=pixels)
    except UserError:
        return
    assert math.isfinite(made.max_upload_mb) and made.max_upload_mb > 0 and made.max_pixels > 0
    assert math.isfinite(made.batch_window_ms) and made.batch_window_ms >= 0


@PROPERTY
@given(st.binary(max_size=2000))
def test_any_file_as_a_catalog_is_refused_untouched_or_opened(data):
    from zeroshot.search.stores.catalog import Catalog

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.sqlite"
        path.write_bytes(data)
        try:
            Catalog(path, create=False).close()
        except UserError:
            assert path.read_bytes() == data  # refused files are left exactly as they were
        assert sorted(os.listdir(folder)) in (["catalog.sqlite"], ["catalog.sqlite", "catalog.sqlite-shm",
                                                                  "catalog.sqlite-wal"])


@pytest.fixture(scope="module")
def saved_head(tmp_path_factory) -> tuple[dict, dict]:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from zeroshot.fewshot import ZeroShotHead
    from zeroshot.fewshot.persistence import save_estimator

    head = ZeroShotHead(np.eye(3, 4), ["a", "b", "c"]).fit(np.eye(1, 4))
    path = save_estimator(head, tmp_path_factory.mktemp("head") / "head.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        return dict(handle.metadata()), load_file(str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["type", "params", "classes", "n_features_in", "fitted", "prior", "other"]),
       value=json_values)
def test_any_header_value_loads_a_working_estimator_or_a_user_error(saved_head, tmp_path, key, value):
    from safetensors.numpy import save_file

    from zeroshot.fewshot.persistence import load_estimator

    metadata, tensors = saved_head
    header = json.loads(metadata["estimator"])
    header[key] = value
    path = tmp_path / "tampered.safetensors"
    save_file(tensors, str(path), metadata={**metadata, "estimator": json.dumps(header)})
    try:
        loaded = load_estimator(path)
    except UserError:
        return
    probabilities = loaded.predict_proba(np.eye(2, 4))
    assert np.isfinite(probabilities).all() and probabilities.shape == (2, len(loaded.classes_))
