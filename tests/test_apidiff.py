"""API diffs and consumer manifests on real llama.cpp headers (npm bundles, parsed once and cached).

The expected lines are what each release's own llama.h says; they are the breaks a binding
maintainer has met in practice: `llama_vocab *` replacing `llama_model *` (b4753),
`llama_batch_get_one` losing two arguments (b4435), `llama_context_params` reordered at the same
size (b5640), `use_mmap`/`use_mlock` giving way to `load_mode` (b10361).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest

from harness.abi import Api
from harness.abi.diff import ApiDiff, StructChange, diff, normalize, render_text
from harness.abi.manifest import check, dump, generate, load, parse
from harness.errors import ConfigError
from tests.realbuilds import api_of

VOCAB = "parameter 1 `model`: const struct llama_model * → const struct llama_vocab *"


@functools.cache
def _api(tag: str) -> Api:
    api: Api = api_of(tag)
    return api


@functools.cache
def _diff(old: str, new: str) -> ApiDiff:
    return diff(_api(old), _api(new))


# -- diff -------------------------------------------------------------------------------------
def test_a_release_against_itself_is_empty() -> None:
    d = diff(_api("b4753"), _api("b4753"))
    assert d.empty and d.summary() == "no changes"
    assert render_text(d, "b4753", "b4753") == "API b4753 → b4753: no changes\n"


def test_vocab_replaces_model_at_b4753() -> None:
    d = _diff("b4435", "b4753")
    tokenize, piece, n_vocab = (
        d.function(n) for n in ("llama_tokenize", "llama_token_to_piece", "llama_n_vocab")
    )
    assert tokenize and tokenize.what == [VOCAB]
    assert piece and piece.what == [VOCAB]
    assert n_vocab and n_vocab.what == [VOCAB, "deprecated"]
    assert d.function("llama_batch_get_one") is None  # already 2 arguments at b4435
    assert "llama_model_get_vocab" in d.functions_added
    assert "llama_vocab" in d.structs_added  # a new opaque record


def test_batch_get_one_lost_two_arguments_at_b4435() -> None:
    change = _diff("b3889", "b4435").function("llama_batch_get_one")
    assert change and change.what == [
        "parameter count 4 → 2",
        "parameter 3 `pos_0` removed",
        "parameter 4 `seq_id` removed",
    ]
    batch = _diff("b3889", "b4435").struct("llama_batch")
    assert batch == StructChange(
        "llama_batch", size=(72, 56), fields_removed=["all_pos_0", "all_pos_1", "all_seq_id"]
    )


def test_context_params_reordered_at_the_same_size_at_b5640() -> None:
    change = _diff("b4753", "b5640").struct("llama_context_params")
    assert change == StructChange(
        "llama_context_params",
        size=None,  # 120 bytes in both: only offsets tell
        fields_added=["op_offload", "swa_full"],
        fields_removed=["logits_all"],
        fields_moved=[
            ("embeddings", 97, 112),
            ("offload_kqv", 98, 113),
            ("flash_attn", 99, 114),
            ("no_perf", 100, 115),
            ("abort_callback", 104, 96),
            ("abort_callback_data", 112, 104),
        ],
    )


def test_model_params_load_mode_at_b10361() -> None:
    change = _diff("b8352", "b10361").struct("llama_model_params")
    assert change == StructChange(
        "llama_model_params",
        size=None,
        fields_added=["load_mode", "load_mtp"],
        fields_removed=["use_mmap", "use_direct_io", "use_mlock"],
        fields_moved=[
            ("main_gpu", 24, 28),
            ("check_tensors", 68, 65),
            ("use_extra_bufts", 69, 66),
            ("no_host", 70, 67),
            ("no_alloc", 71, 68),
        ],
    )
    assert "llama_load_mode" in _diff("b8352", "b10361").enums_added


def test_same_type_respelled_is_not_a_change() -> None:
    """b8352 writes `int32_t` where b5640 wrote `int`, drops a `const`, and renumbers the line
    of an anonymous union: none of that changes what a binding passes."""
    d = _diff("b5640", "b8352")
    assert d.function("llama_split_path") is None
    assert d.function("llama_sampler_init") is None
    kv = d.struct("llama_model_kv_override")
    assert kv is None or not kv.fields_retyped
    sampler = d.struct("llama_sampler")
    assert sampler is None or not sampler.fields_retyped


def test_a_typedef_that_changes_under_the_same_name_is_a_change() -> None:
    old = _api("b4753")
    new = copy.deepcopy(old)
    new.functions["llama_tokenize"].params[3].type.pointee.size = 8  # type: ignore[union-attr]
    change = diff(old, new).function("llama_tokenize")
    assert change and change.what == [
        "parameter 4 `tokens`: llama_token * (pointer to 4-byte int)"
        " → llama_token * (pointer to 8-byte int)"
    ]


def test_prefixes_choose_the_api() -> None:
    ggml = diff(_api("b4435"), _api("b4753"), prefixes=("ggml_",))
    names = ggml.functions_added + ggml.functions_removed + [s.name for s in ggml.structs_changed]
    assert "ggml_backend_device_register" in ggml.functions_added
    assert all(n.startswith("ggml_") for n in names)
    tensor = ggml.struct("ggml_tensor")
    assert tensor and tensor.fields_removed == ["backend"]
    llama = _diff("b4435", "b4753")
    assert not any(n.startswith("ggml_") for n in llama.functions_added + llama.structs_removed)
    both = diff(_api("b4435"), _api("b4753"), prefixes=("llama_", "ggml_"))
    assert set(both.functions_added) == set(llama.functions_added) | set(ggml.functions_added)


def test_json_round_trip_is_plain_json() -> None:
    d = _diff("b4753", "b5640")
    data = d.to_json()
    assert json.loads(json.dumps(data)) == data
    assert ApiDiff.from_json(json.loads(json.dumps(data))) == d
    assert (
        data["summary"]
        == d.summary()
        == "+35 −15 functions, 1 changed; +4 −2 structs, 3 changed; 1 enums changed"
    )


def test_text_is_grouped_and_stable() -> None:
    d = _diff("b4435", "b4753")
    text = render_text(d, "b4435", "b4753")
    assert text == render_text(_diff("b4435", "b4753"), "b4435", "b4753")
    assert text.splitlines()[0] == f"API b4435 → b4753: {d.summary()}"
    order = [
        "Functions removed",
        "Functions changed",
        "Functions added",
        "Structs removed",
        "Structs changed",
        "Structs added",
    ]
    at = [text.index(f"\n{h} (") for h in order]
    assert at == sorted(at)
    assert f"  llama_tokenize\n      {VOCAB}\n" in text
    assert "      − rpc_servers\n" in text


# -- manifests --------------------------------------------------------------------------------
def test_manifest_from_b4435_breaks_on_b4753(tmp_path: Path) -> None:
    m = generate(
        _api("b4435"),
        ["llama_tokenize", "llama_decode", "llama_context_default_params"],
        ["llama_context_params:n_ctx,n_batch"],
        tag="b4435",
    )
    assert m["functions"]["llama_tokenize"] == (
        "int32_t (const struct llama_model *, const char *, int32_t, llama_token *, int32_t,"
        " bool, bool)"
    )
    assert m["structs"] == {
        "llama_context_params": {
            "size": 120,
            "fields": {
                "n_ctx": {"offset": 0, "type": "uint32_t"},
                "n_batch": {"offset": 4, "type": "uint32_t"},
            },
        }
    }
    path = tmp_path / "binding.yaml"
    path.write_text(dump(m), encoding="utf-8")
    assert load(path) == m
    assert check(m, _api("b4435")).compatible
    verdict = check(m, _api("b4753"))
    assert not verdict.compatible
    assert verdict.breaks == [
        "llama_tokenize: parameter 1 const struct llama_model * → const struct llama_vocab *"
    ]
    assert json.loads(json.dumps(verdict.to_json())) == verdict.to_json()


def test_default_structs_are_the_by_value_ones() -> None:
    m = generate(_api("b4435"), ["llama_decode", "llama_context_default_params"], tag="b4435")
    assert list(m["structs"]) == ["llama_batch", "llama_context_params"]
    assert len(m["structs"]["llama_context_params"]["fields"]) == 28
    verdict = check(m, _api("b5640"))
    assert verdict.breaks == [
        "llama_context_params.logits_all: removed",
        "llama_context_params.embeddings: offset 97 → 112",
        "llama_context_params.offload_kqv: offset 98 → 113",
        "llama_context_params.flash_attn: offset 99 → 114",
        "llama_context_params.no_perf: offset 100 → 115",
        "llama_context_params.abort_callback: offset 104 → 96",
        "llama_context_params.abort_callback_data: offset 112 → 104",
    ]


def test_manifest_from_b4753_sees_the_reorder_of_b5640() -> None:
    m = generate(
        _api("b4753"),
        ["llama_init_from_model"],
        ["llama_context_params:n_ctx,n_batch,embeddings,logits_all,abort_callback"],
        tag="b4753",
    )
    assert check(m, _api("b4753")).breaks == []
    assert check(m, _api("b5640")).breaks == [
        "llama_context_params.embeddings: offset 97 → 112",
        "llama_context_params.logits_all: removed",
        "llama_context_params.abort_callback: offset 104 → 96",
    ]


def test_manifest_from_b8352_loses_use_mmap_on_b10361() -> None:
    m = generate(
        _api("b8352"),
        ["llama_model_default_params", "llama_model_load_from_file"],
        ["llama_model_params:n_gpu_layers,use_mmap"],
        tag="b8352",
    )
    assert check(m, _api("b8352")).compatible
    verdict = check(m, _api("b10361"))
    assert verdict.breaks == ["llama_model_params.use_mmap: removed"]


def test_manifest_of_a_respelled_function_still_matches() -> None:
    m = generate(_api("b5640"), ["llama_split_path"], tag="b5640")
    assert m["functions"]["llama_split_path"] == "int (char *, size_t, const char *, int, int)"
    assert check(m, _api("b8352")).compatible  # b8352 says int32_t


def test_hand_written_manifest_with_odd_spacing(tmp_path: Path) -> None:
    path = tmp_path / "hand.yaml"
    path.write_text(
        """\
manifest: 1
functions:
  llama_tokenize: "int32_t(const struct llama_vocab*,const char  *, int32_t,llama_token*,int32_t ,
    bool,bool)"
  llama_token_to_piece: {returns: int32_t,
    params: [llama_vocab const *, llama_token, char*, int32_t, int32_t, bool]}
  llama_model_get_vocab: const llama_vocab * ( const llama_model * )
  llama_batch_get_one: llama_batch (int32_t *, int)
  llama_n_vocab: int (const llama_vocab*)
  llama_log_set: void (ggml_log_callback, void *)
  llama_backend_init: void ()
structs:
  llama_model_kv_override:
    fields: {key: {offset: 4, type: "char [128]"}}
  llama_context_params:
    fields: [n_ctx, n_batch]
enums:
  llama_pooling_type: {LLAMA_POOLING_TYPE_NONE: 0, LLAMA_POOLING_TYPE_MEAN: 1}
""",
        encoding="utf-8",
    )
    verdict = check(load(path), _api("b4753"))
    assert verdict.breaks == []
    assert verdict.warnings == ["llama_n_vocab: deprecated"]
    verdict = check(load(path), _api("b4435"))
    assert verdict.breaks == [
        "llama_tokenize: parameter 1 const struct llama_vocab* → const struct llama_model *",
        "llama_token_to_piece: parameter 1 llama_vocab const * → const struct llama_model *",
        "llama_model_get_vocab: not declared",
        "llama_n_vocab: parameter 1 const llama_vocab* → const struct llama_model *",
    ]


def test_a_changed_manifest_value_breaks() -> None:
    m = parse(
        {
            "manifest": 1,
            "functions": {
                "llama_free": "void (struct llama_context *, int)",
                "llama_foo": "void ()",
            },
            "structs": {
                "llama_context_params": {
                    "size": 128,
                    "fields": {"n_ctx": {"offset": 4, "type": "int64_t", "size": 8}},
                }
            },
            "enums": {
                "llama_pooling_type": {"LLAMA_POOLING_TYPE_NONE": 1, "LLAMA_POOLING_TYPE_X": None}
            },
        }
    )
    assert check(m, _api("b4753")).breaks == [
        "llama_free: parameter count 2 → 1",
        "llama_foo: not declared",
        "llama_context_params: size 128 → 120",
        "llama_context_params.n_ctx: offset 4 → 0",
        "llama_context_params.n_ctx: type int64_t → uint32_t",
        "llama_context_params.n_ctx: size 8 → 4",
        "llama_pooling_type.LLAMA_POOLING_TYPE_NONE: value 1 → 0",
        "llama_pooling_type.LLAMA_POOLING_TYPE_X: removed",
    ]


def test_generate_refuses_unknown_names() -> None:
    with pytest.raises(ConfigError, match="b4753 declares no function llama_nope"):
        generate(_api("b4753"), ["llama_tokenize", "llama_nope"], tag="b4753")
    with pytest.raises(ConfigError, match="b4753: llama_context_params has no field 'nope'"):
        generate(_api("b4753"), [], ["llama_context_params:n_ctx,nope"], tag="b4753")
    with pytest.raises(ConfigError, match=r"b4753 defines no struct llama_model$"):
        generate(_api("b4753"), [], ["llama_model"], tag="b4753")  # opaque


BAD: dict[str, tuple[str, str]] = {
    "unknown key": (
        "manifest: 1\nfuncs: {}\n",
        "m.yaml: top level: unknown key 'funcs'"
        " (allowed: enums, from, functions, manifest, structs, target)",
    ),
    "no format": ("functions: {}\n", "m.yaml: top level: 'manifest' is required"),
    "future format": (
        "manifest: 2\n",
        "m.yaml: manifest: unknown manifest format 2 (this version reads 1)",
    ),
    "number as prototype": (
        "manifest: 1\nfunctions:\n  llama_free: 3\n",
        'm.yaml: functions.llama_free: expected a prototype string "ret (type, type, ...)"'
        " or {returns: T, params: [T, ...]}",
    ),
    "prototype without parameters": (
        "manifest: 1\nfunctions:\n  llama_free: void\n",
        "m.yaml: functions.llama_free: expected 'return_type (param_type, ...)', got 'void'",
    ),
    "misspelt key": (
        "manifest: 1\nstructs:\n  llama_batch:\n    fields: {token: {ofset: 8}}\n",
        "m.yaml: structs.llama_batch.fields.token: unknown key 'ofset'"
        " (allowed: offset, size, type)",
    ),
    "offset as text": (
        "manifest: 1\nstructs:\n  llama_batch:\n    fields: {token: {offset: '8'}}\n",
        "m.yaml: structs.llama_batch.fields.token.offset: expected an integer, got '8'",
    ),
    "structs as a list": (
        "manifest: 1\nstructs: [llama_batch]\n",
        "m.yaml: structs: expected a mapping, got a list",
    ),
    "malformed YAML": (
        "manifest: 1\nfunctions: {a: [\n",
        "m.yaml:3:1: malformed YAML: expected the node content, but found '<stream end>'",
    ),
    "empty": ("", "m.yaml: the file is empty (it needs at least 'manifest: 1')"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_manifest_is_one_clear_line(case: str, tmp_path: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message == str(tmp_path / expected)


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="manifest file not found"):
        load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("const struct llama_vocab *", "const llama_vocab*"),
        ("llama_vocab const *", "const struct  llama_vocab *"),
        ("char * const *", "char*const*"),
        ("enum llama_pooling_type", "llama_pooling_type"),
    ],
)
def test_normalize(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)


def test_normalize_keeps_what_matters() -> None:
    assert normalize("const char **") != normalize("const char *")
    assert normalize("const char * *") == normalize("const char **")
    assert normalize("char * const") != normalize("const char *")
