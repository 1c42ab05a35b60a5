"""Foundation: config, model registry, loading, CLI errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cli_helpers import run_cli
from politune.config import Config, load_config, parse_overrides, save_resolved
from politune.errors import PolituneError
from politune.fsutil import append_jsonl, atomic_write_text, read_jsonl_log, safe_name
from politune.hardware import pick_device, pick_dtype


class Lora(Config):
    r: int = 8
    alpha: int = 16


class Recipe(Config):
    beta: float = 0.1
    lora: Lora = Lora()
    name: str = "x"


def test_overrides_nested_and_typed(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("beta: 0.3\nlora:\n  r: 4\n")
    cfg = load_config(Recipe, p, ["lora.alpha=64", "name=left"])
    assert (cfg.beta, cfg.lora.r, cfg.lora.alpha, cfg.name) == (0.3, 4, 64, "left")
    assert parse_overrides(["a.b.c=[1,2]"]) == {"a": {"b": {"c": [1, 2]}}}
    out = save_resolved(cfg, tmp_path / "run")
    assert "alpha: 64" in out.read_text()


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(PolituneError, match=r"unknown key 'lora.alhpa'; did you mean 'lora.alpha'"):
        load_config(Recipe, None, ["lora.alhpa=3"])
    with pytest.raises(PolituneError, match=r"unknown key 'bta'; did you mean 'beta'"):
        load_config(Recipe, None, ["bta=3"])


def test_wrong_type_names_key_and_type():
    with pytest.raises(PolituneError, match=r"key 'lora.r': .*integer"):
        load_config(Recipe, None, ["lora.r=lots"])


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("beta: 0.1\nlora: [unclosed\n")
    with pytest.raises(PolituneError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(Recipe, p)


def test_cpu_dtype_follows_flags_and_measurement(monkeypatch):
    from politune import hardware

    if not torch.cuda.is_available():
        assert pick_device("auto") == "cpu"
    with pytest.raises(PolituneError):
        pick_dtype("float8", "cpu")
    assert hardware.cpu_bf16_flags("flags\t: fpu sse avx512f avx512_bf16 amx_bf16\n") == (
        "amx_bf16",
        "avx512_bf16",
    )
    assert hardware.cpu_bf16_flags("flags\t: fpu sse avx2 avx512f\n") == ()
    for flags, speedup, expected in [
        ((), 9.0, torch.float32),
        (("avx512_bf16",), 1.1, torch.float32),
        (("avx512_bf16",), 2.2, torch.bfloat16),
    ]:
        hardware.cpu_bf16.cache_clear()
        monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda f=flags: f)
        monkeypatch.setattr(hardware, "measure_bf16_speedup", lambda s=speedup: s)
        assert pick_dtype("auto", "cpu") == expected
        choice = hardware.dtype_choice("auto", "cpu")
        assert choice["dtype"] == hardware.dtype_name(expected) and choice["reason"]
        assert pick_dtype("float32", "cpu") == torch.float32  # an explicit dtype is never overridden
    hardware.cpu_bf16.cache_clear()
    assert hardware.cpu_bf16_decided() is None  # recording the decision never runs the benchmark
    pick_dtype("auto", "cpu")
    assert hardware.cpu_bf16_decided() == hardware.cpu_bf16()
    hardware.cpu_bf16.cache_clear()


def test_bf16_speedup_is_measured():
    from politune.hardware import measure_bf16_speedup

    speedup = measure_bf16_speedup(seconds=0.05, shape=(64, 64, 64))
    assert speedup > 0 and speedup != float("inf")


def test_safe_name_rejects_paths():
    assert safe_name("left-v1.2") == "left-v1.2"
    for bad in ["../../etc", "a/b", "", ".hidden", "x" * 200, "a..b"]:
        with pytest.raises(PolituneError):
            safe_name(bad)


def test_atomic_write_and_torn_log(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"step": 1})
    append_jsonl(log, {"step": 2})
    with log.open("a") as f:
        f.write('{"step": 3')  # torn by a crash
    assert read_jsonl_log(log) == [{"step": 1}, {"step": 2}]
    append_jsonl(log, {"step": 4})  # the next record after a torn line is still readable
    assert read_jsonl_log(log) == [{"step": 1}, {"step": 2}, {"step": 4}]


def test_tiny_model_generates(tiny_model):
    from politune.models import format_chat, generate

    model, tok = tiny_model
    text = format_chat(tok, "Should taxes rise?", system="Be brief.")
    assert text.startswith("<|im_start|>system\nBe brief.") and text.endswith("<|im_start|>assistant\n")
    a = generate(model, tok, ["Should taxes rise?", "Hi"], max_new_tokens=5)
    b = generate(model, tok, ["Should taxes rise?", "Hi"], max_new_tokens=5)
    assert a == b and len(a) == 2


def test_registry_tiny_pull_and_corrupt_cache_rebuilt(caplog):
    from politune.models import load_model, pull, verify_cache

    path = pull("tiny-random")
    assert verify_cache(path) is None
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # altered, same size
    weights.write_bytes(bytes(data))
    assert "SHA-256" in verify_cache(path)
    with caplog.at_level("WARNING", logger="politune"):
        path2 = pull("tiny-random")
    assert "corrupt" in caplog.text and verify_cache(path2) is None
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    assert "size" in verify_cache(path)
    pull("tiny-random")
    model, tok = load_model("tiny-random")
    assert next(model.parameters()).dtype == pick_dtype("auto", "cpu")  # measured, not assumed


@pytest.mark.parametrize(
    "args,needle",
    [
        (["models", "info", "no-such-model"], "unknown model 'no-such-model'"),
        (["models", "info", "smolm2-135m"], "did you mean 'smollm2-135m'"),
        (["models", "info", "./missing-dir"], "does not exist"),
        (["models", "pull", "someorg/somemodel"], "someorg/somemodel"),
        (["measure", "compass", "--open-reader", "vibes"], "--open-reader 'vibes': expected agree or probe"),
    ],
)
def test_cli_bad_model_one_line_exit_2(args, needle, monkeypatch, capsys):
    code, out, err = run_cli([*args], monkeypatch, capsys)
    assert code == 2, err
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,needle",
    [
        (["measure", "all", "--no-such-flag"], "No such option: --no-such-flag"),
        (["measure", "compass", "--items", "many"], "Invalid value for '--items'"),
    ],
)
def test_cli_usage_error_no_traceback_exit_2(args, needle, monkeypatch, capsys):
    """typer >= 0.29 raises its vendored click's exceptions, not click's: both must end as a usage message."""
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and needle in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", [["measure", "all"], ["measure", "safety"], ["measure", "issues"]])
def test_measure_commands_take_threads(command, monkeypatch, capsys):
    """--threads reaches the commands that generate answers (checked before any model is loaded)."""
    code, out, err = run_cli([*command, "--threads", "-1"], monkeypatch, capsys)
    assert code == 2 and "--threads -1: expected 0 (default) or a positive number" in err, err


def test_cli_help_and_version(monkeypatch, capsys):
    code, out, err = run_cli(["--help"], monkeypatch, capsys)
    assert code == 0 and "models" in out
    code, out, err = run_cli(["version", "--json"], monkeypatch, capsys)
    assert code == 0 and '"politune"' in out


def test_python_dash_m_politune_is_the_cli():
    r = subprocess.run(
        [sys.executable, "-m", "politune", "version", "--json"], capture_output=True, text=True
    )
    assert r.returncode == 0 and '"politune"' in r.stdout, r.stderr


def test_version_is_the_installed_metadata():
    from importlib.metadata import version

    import politune

    assert politune.__version__ == version("politune")


@pytest.mark.slow
def test_smollm2_answers_a_political_question(smollm2_dir):
    from politune.models import generate, load_model

    model, tok = load_model(str(smollm2_dir))
    n = sum(p.numel() for p in model.parameters())
    assert 134_000_000 < n < 135_000_000
    (answer,) = generate(
        model, tok, ["Should the minimum wage be raised? Answer in one sentence."], max_new_tokens=40
    )
    assert len(answer.split()) >= 3
