"""The throughput suite, the native driver and the regression comparison.

Real builds (node-llama-cpp's linux-x64 packages) where the figures come from a release; synthetic
samples where the comparison's arithmetic is the point; a fake `llama-bench` (a script printing
llama-bench's JSON) since the npm builds do not ship one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.load.loader import find_libdir
from harness.report import compare
from harness.report.compare import gate, parse_threshold, stats
from harness.suites import throughput
from harness.suites import throughput_stats as ts
from harness.suites.fixtures import model
from harness.suites.native import (
    build_driver,
    driver_flags,
    find_compiler,
    find_llama_bench,
    parse_llama_bench,
    run_llama_bench,
)
from harness.suites.throughput import presets_for
from harness.suites.throughput_json import benchmark_json, write_benchmark_json
from harness.suites.throughput_rounds import measure_platform, run_bench
from tests.realbuilds import CACHE, ERAS, api_of, downloader, provision

SMALL_SHA256 = {
    "small-f16": "4df7dd27e598733f5fbe85deee7dfff694c83221194a0e2ce73965a6cf0d02fa",
    "small-q8_0": "3c256839a371bc27e0fa6109332cf784b08ee323695d2e62b9789471a35a8e7f",
}
CELL = {"os": "linux", "arch": "x64", "variant": "cpu"}


def spec_for(tag: str, tmp: Path, presets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A bench spec for a real release, as `run` would build it."""
    from harness.abi.release import headers_dir

    res = provision([tag])[tag]
    assert res.stored
    api_path = tmp / f"api-{tag}.json"
    api_path.write_text(api_of(tag).to_json(), encoding="utf-8")
    return {
        "libdir": str(find_libdir(Path(res.stored.path))),
        "api": str(api_path),
        "presets": presets,
        "threads": 1,
        "include": str(headers_dir(downloader(), res)),
        "cache": str(CACHE),
        "build": res.build,
        "tree": str(res.stored.path),
        **extra,
    }


# --- the small presets ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["small-f16", "small-q8_0"])
def test_small_presets_are_pinned_cached_and_typed(tmp_path: Path, preset: str) -> None:
    import gguf

    path = model.ensure_model(tmp_path, preset)
    assert path.name == f"{preset}-{model.SMALL_VERSION}.gguf"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SMALL_SHA256[preset], "model bytes changed: bump SMALL_VERSION and the pins"
    mtime = path.stat().st_mtime_ns
    assert model.ensure_model(tmp_path, preset).stat().st_mtime_ns == mtime  # reused
    reader = gguf.GGUFReader(path)
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    assert 20_000_000 < n_params < 40_000_000
    q = gguf.GGMLQuantizationType
    want = q.F16 if preset == "small-f16" else q.Q8_0
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_up.weight"] == want
    assert types["blk.0.attn_norm.weight"] == q.F32


def test_unknown_preset_names_the_presets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="small-q8_0"):
        model.ensure_model(tmp_path, "medium")


# --- statistics and the comparison (synthetic) ----------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 10, 21])
def test_stats_are_pytest_benchmarks(n: int) -> None:
    from pytest_benchmark.stats import Stats

    data = [((i * 7919) % 23) / 3.0 + 1.0 for i in range(n)]
    ref = Stats()
    for x in data:
        ref.update(x)
    ours = stats(data)
    for key in ("median", "q1", "q3", "iqr", "mean", "min", "max", "stddev", "rounds"):
        assert ours[key] == pytest.approx(getattr(ref, key)), key
    block = ts.benchmark_stats(data)
    for key in ("ld15iqr", "hd15iqr", "iqr_outliers", "stddev_outliers", "ops", "total"):
        assert block[key] == pytest.approx(getattr(ref, key)), key
    assert block["outliers"] == ref.outliers


def cell(release: str, samples: dict[tuple[str, str], list[float]]) -> dict[str, Any]:
    bench: dict[str, Any] = {"machine": {}, "params": {}}
    for (preset, test), xs in samples.items():
        bench.setdefault(preset, {})[test] = {**stats(xs), "samples": xs, "threads": 1}
    return {"release": release, "build": release, **CELL, "bench": bench}


NOISY = [100.0, 103.0, 97.0, 101.0, 99.0, 102.0, 98.0]


def test_a_baseline_20_percent_faster_fails_the_gate_across_runs() -> None:
    now = {"cells": [cell("b8095", {("small-f16", "pp128"): NOISY})]}
    base = {"cells": [cell("b8095", {("small-f16", "pp128"): [x * 1.25 for x in NOISY]})]}
    [entry] = compare.compare(now, base)
    assert entry["against"] == "baseline" and not entry["interleaved"]
    assert entry["change"] == pytest.approx(-0.2)
    assert entry["verdict"] == "slower"
    assert entry["drift"] == ts.DRIFT_FLOOR and "widened by ±10%" in entry["note"]
    assert gate([entry], parse_threshold("5%")) == []  # in-run comparisons only, by default
    [line] = gate([entry], parse_threshold("5%"), across_runs=True)
    assert "b8095 linux/x64/cpu small-f16 pp128: -20.0%" in line


def test_a_baseline_within_noise_passes_the_gate() -> None:
    now = {"cells": [cell("b8095", {("small-f16", "pp128"): NOISY})]}
    shifted = [x * 1.01 for x in reversed(NOISY)]
    base = {"cells": [cell("b8095", {("small-f16", "pp128"): shifted})]}
    [entry] = compare.compare(now, base)
    assert entry["verdict"] == "within noise"  # within ±(5 % + 10 % of drift between runs)
    assert entry["low"] < 0 < entry["high"]
    assert gate([entry], 0.05, across_runs=True) == []


def test_releases_are_compared_in_build_order_per_platform() -> None:
    a = cell("b6673", {("tiny", "pp64"): [30.0, 31.0, 29.0]})
    b = cell("b5640", {("tiny", "pp64"): [100.0, 101.0, 99.0]})
    c = cell("b8095", {("tiny", "pp64"): [30.0, 31.0, 29.5]})
    other = {**cell("b5640", {("tiny", "pp64"): [1.0, 1.0, 1.0]}), "os": "windows"}
    out = compare.compare({"cells": [a, b, c, other]})
    pairs = [(e["previous"], e["release"], e["verdict"]) for e in out]
    assert pairs == [("b5640", "b6673", "slower"), ("b6673", "b8095", "inconclusive")]


def test_few_repetitions_use_the_whole_range() -> None:
    change, low, high = compare.interval([90.0, 95.0], [100.0, 102.0])
    assert change == pytest.approx(92.5 / 101 - 1)
    assert low == pytest.approx(90 / 102 - 1) and high == pytest.approx(95 / 100 - 1)
    assert high < 0


def test_errored_bench_sections_are_left_out() -> None:
    good = cell("b5640", {("tiny", "pp64"): NOISY})
    bad = {**cell("b6673", {}), "bench": {"error": "crash: SIGSEGV in tiny pp64"}}
    assert compare.compare({"cells": [good, bad]}) == []


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.1", 0.1), (" 12.5% ", 0.125)])
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["fast", "150%", "-1%"])
def test_parse_threshold_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_threshold(text)


# --- llama-bench, with a fake executable ---------------------------------------------------------

LLAMA_BENCH_JSON = [
    {
        "build_commit": "abc1234",
        "build_number": 6673,
        "backends": "CPU",
        "n_batch": 2048,
        "n_ubatch": 512,
        "n_threads": 1,
        "flash_attn": False,
        "n_prompt": 64,
        "n_gen": 0,
        "avg_ns": 600000,
        "stddev_ns": 10000,
        "avg_ts": 106666.6,
        "stddev_ts": 1800.2,
        "samples_ns": [590000, 600000, 610000],
        "samples_ts": [108474.5, 106666.6, 104918.0],
    },
    {"n_prompt": 0, "n_gen": 16, "n_threads": 1, "avg_ts": 18000.0, "stddev_ts": 50.0},
]


def fake_llama_bench(folder: Path) -> Path:
    """A `llama-bench` that checks its arguments and prints llama-bench-shaped JSON."""
    exe = folder / "build" / "bin" / "llama-bench"
    exe.parent.mkdir(parents=True)
    exe.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys
            args = sys.argv[1:]
            assert args[args.index("-o") + 1] == "json", args
            assert "-m" in args and "-p" in args and "-n" in args and "-r" in args, args
            print("main: log line before the JSON", file=sys.stderr)
            records = {json.dumps(LLAMA_BENCH_JSON)!r}
            sys.stdout.write(records)
            """
        )
    )
    exe.chmod(0o755)
    return exe


def test_llama_bench_json_is_parsed() -> None:
    got = parse_llama_bench(json.dumps(LLAMA_BENCH_JSON))
    assert set(got) == {"pp64", "tg16"}
    assert got["pp64"]["median"] == pytest.approx(106666.6)
    assert got["pp64"]["rounds"] == 3 and got["pp64"]["build_number"] == 6673
    assert got["tg16"]["median"] == pytest.approx(18000.0)  # no samples_ts: avg_ts stands in
    assert got["tg16"]["threads"] == 1
    noisy = "llama_model_loader: loaded\n" + json.dumps(LLAMA_BENCH_JSON)
    assert parse_llama_bench(noisy)["pp64"]["rounds"] == 3


def test_the_fake_llama_bench_is_found_and_run(tmp_path: Path) -> None:
    exe = fake_llama_bench(tmp_path)
    assert find_llama_bench(tmp_path) == exe
    assert find_llama_bench(tmp_path / "build") == exe
    got = run_llama_bench(exe, tmp_path / "m.gguf", 64, 16, reps=3, threads=1)
    assert got["pp64"]["median"] == pytest.approx(106666.6)


# --- real releases -------------------------------------------------------------------------------

real = pytest.mark.xdist_group("real-builds")


@pytest.fixture(scope="module")
def b5640_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real run on the tiny model, 2 repetitions, native driver and a fake llama-bench."""
    tmp = tmp_path_factory.mktemp("bench")
    presets = presets_for(CACHE, ["tiny"], reps=2)
    spec = spec_for("b5640", tmp, presets)
    fake_llama_bench(tmp / "tree")
    spec["tree"] = str(tmp / "tree")  # stands in for a GitHub archive that ships llama-bench
    return run_bench(spec, tmp / "work", timeout=120)


@real
def test_bench_section_shape(b5640_bench: dict[str, Any]) -> None:
    bench = b5640_bench
    assert "error" not in bench, bench
    assert throughput.presets_of(bench) == ["tiny"]
    for test in ("pp64", "tg16"):
        fig = bench["tiny"][test]
        assert fig["median"] > 0 and fig["rounds"] == 2 and len(fig["samples"]) == 2
        assert fig["q1"] <= fig["median"] <= fig["q3"] and fig["threads"] == 1
    assert bench["params"]["tiny"]["flash_attn"] == "off"  # b5640: before `auto`
    assert bench["machine"]["cpu"]["count"] and "CPU" in bench["machine"]["llama_system_info"]
    assert bench["llama_bench"]["tiny"]["pp64"]["median"] == pytest.approx(106666.6)


@real
def test_native_ratio_is_computed(b5640_bench: dict[str, Any]) -> None:
    if find_compiler() is None:
        assert "error" in b5640_bench["native"]
        pytest.skip("no C compiler here")
    native = b5640_bench["native"]["tiny"]
    assert native["pp64"]["median"] > 0 and native["tg16"]["rounds"] == 2
    ratio = b5640_bench["ratio"]["tiny"]
    # tiny is dominated by call overhead and this runner may be shared: only sanity here
    assert 0.2 < ratio["pp64"] < 5 and 0.2 < ratio["tg16"] < 5
    low, high = b5640_bench["ratio_interval"]["tiny"]["pp64"]
    assert low <= ratio["pp64"] <= high


@real
def test_pytest_benchmark_reads_the_json(b5640_bench: dict[str, Any], tmp_path: Path) -> None:
    path = write_benchmark_json(tmp_path, b5640_bench, {"release": "b5640", **CELL})
    doc = json.loads(path.read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert "pp64[tiny-harness]" in names
    assert doc["machine_info"]["cpu"]["count"] and doc["commit_info"]["branch"] == "b5640"
    cli = shutil.which("pytest-benchmark") or shutil.which("py.test-benchmark")
    if cli is None:
        pytest.skip("pytest-benchmark's CLI is not installed")
    out = subprocess.run(
        [cli, "compare", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "pp64[tiny-harness]" in out and "tg16[tiny-native]" in out
    assert benchmark_json(b5640_bench, {"release": "b5640", **CELL})["benchmarks"]


@real
@pytest.mark.parametrize("tag", ERAS)
def test_the_driver_compiles_for_every_era(tag: str) -> None:
    from harness.abi.release import headers_dir

    if find_compiler() is None:
        pytest.skip("no C compiler here")
    res = provision([tag])[tag]
    api = api_of(tag)
    driver = build_driver(CACHE, headers_dir(downloader(), res), api, res.build or tag)
    assert driver.path is not None, driver.reason
    flags = driver_flags(api)
    four = tag == "b3889"
    assert f"-DBATCH_GET_ONE_ARGS={4 if four else 2}" in flags
    assert ("-DHAS_VOCAB_API" in flags) == (tag not in ("b3889", "b4435"))


@real
def test_small_presets_run_in_the_oldest_era(tmp_path: Path) -> None:
    """b3889: 4-argument batches, llama_kv_cache_clear, f16 and q8_0 weights, natively too."""
    presets = presets_for(CACHE, ["small-f16", "small-q8_0"], n_prompt=16, n_gen=2, reps=1)
    bench = run_bench(spec_for("b3889", tmp_path, presets), tmp_path / "work", timeout=180)
    assert "error" not in bench, bench
    for preset in presets:
        assert bench[preset]["pp16"]["median"] > 0 and bench[preset]["tg2"]["median"] > 0
        if find_compiler():
            assert bench["native"][preset]["pp16"]["median"] > 0
            assert bench["ratio"][preset]["pp16"] > 0


@real
def test_b6673_flash_attention_auto_is_found_interleaved(tmp_path: Path) -> None:
    """b6673 made flash attention `auto`; on the CPU builds the tiny model's pp changed a lot
    (here: about -70 %, far beyond any noise). Both releases measured in the same 6 rounds,
    alternating (the fewest rounds that give a 95 % interval)."""
    presets = presets_for(CACHE, ["tiny"], n_gen=0, reps=3)
    specs = {
        tag: spec_for(tag, tmp_path, presets, native=False, llama_bench=False)
        for tag in ("b5640", "b6673")
    }
    benches = measure_platform(specs, tmp_path / "work", timeout=120, rounds=6)
    cells = []
    for tag, bench in benches.items():
        assert "error" not in bench, bench
        assert bench["interleave"]["rounds"] == 6 and bench["interleave"]["order"] == "ABBA"
        assert len(bench["tiny"]["pp64"]["by_round"]) == 6
        assert len(bench["tiny"]["pp64"]["samples"]) == 18
        cells.append({"release": tag, "build": tag, **CELL, "bench": bench})
    assert cells[0]["bench"]["interleave"]["session"] == cells[1]["bench"]["interleave"]["session"]
    # one child per round, contender and preset, each in its own folder
    assert sorted(p.name for p in (tmp_path / "work" / "b5640").iterdir()) == [
        f"r{r}-tiny" for r in range(6)
    ]
    for folder in (tmp_path / "work").glob("*/r*-tiny"):  # each started once (the launcher's log)
        assert len((folder / "bench.starts.jsonl").read_text().splitlines()) == 1
    assert [c["bench"]["params"]["tiny"]["flash_attn"] for c in cells] == ["off", "auto"]
    [entry] = compare.compare({"cells": cells})
    assert (entry["release"], entry["previous"], entry["test"]) == ("b6673", "b5640", "pp64")
    assert entry["interleaved"] and entry["verdict"] == "slower", entry
    assert entry["change"] < -0.3, entry
    assert len(gate([entry], 0.05)) == 1  # `--fail-on-regression`


@real
def test_a_crash_in_the_child_is_reported(tmp_path: Path) -> None:
    """A libllama whose llama_backend_init segfaults: the cell gets an error naming the signal."""
    cc = find_compiler()
    if cc is None:
        pytest.skip("no C compiler here")
    lib = tmp_path / "lib"
    lib.mkdir()
    src = tmp_path / "boom.c"
    src.write_text(
        "#include <signal.h>\n"
        "void llama_log_set(void *cb, void *ud) { (void)cb; (void)ud; }\n"
        "void llama_backend_init(void) { raise(SIGSEGV); }\n"
    )
    subprocess.run(
        [*cc.split(), "-shared", "-fPIC", str(src), "-o", str(lib / "libllama.so")], check=True
    )
    spec = spec_for("b5640", tmp_path, presets_for(CACHE, ["tiny"], reps=1), native=False)
    good = dict(spec)
    spec["libdir"] = str(lib)
    bench = run_bench(spec, tmp_path / "work", timeout=60)
    assert bench["error"].startswith("crash: SIGSEGV while loading the library"), bench
    # beside a good contender, loaded ahead and waiting at its gate: the crash stops only the bad
    # one (no round waits forever for a child that died before it was ready)
    got = measure_platform({"bad": spec, "good": good}, tmp_path / "both", timeout=60, rounds=2)
    assert got["bad"]["error"].startswith("crash: SIGSEGV while loading the library"), got
    assert len(got["good"]["tiny"]["pp64"]["by_round"]) == 2, got["good"]
