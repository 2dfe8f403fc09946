"""The real loader on tiny checkpoints: round trips, both key namings, shards, dtypes, and its refusals."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from unipixel_ros.model.chat import chat_text, encode_request
from unipixel_ros.model.checkpoint_keys import to_legacy_key
from unipixel_ros.model.inputs import ReferenceInput
from unipixel_ros.model.loader import CheckpointError, load_unipixel, resolve_dtype
from unipixel_ros.model.tiny import TINY_FRAME_SIZE, build_tiny_unipixel
from unipixel_ros.prompts import MEM_TOKEN, REF_TOKEN, SEG_TOKEN

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model and the folder ``save_pretrained`` wrote it to (with its processor)."""
    model, processor = build_tiny_unipixel(seed=3)
    folder = tmp_path_factory.mktemp("tiny-unipixel")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor, folder


def copy_of(folder, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def request(processor):
    """A request that uses every input path: video, a box prompt, memory regions, prompt <|seg|>."""
    frames = np.random.default_rng(7).integers(0, 256, (4, TINY_FRAME_SIZE, TINY_FRAME_SIZE, 3), dtype=np.uint8)
    text = chat_text(f"[0]: <1>-<2> {MEM_TOKEN}\nIs [0] next to [1] {REF_TOKEN}?",
                     response=f"[0] {SEG_TOKEN} [1] {SEG_TOKEN}")
    regions = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    regions[0, 0, 1, 0] = True
    return encode_request(processor, text, frames, references=[ReferenceInput.box(4, 8, 100, 60, 2)],
                          region_masks=regions)


def outputs(model, processor):
    inputs = request(processor)
    return model.prompt_seg_tokens(inputs), model.generate_greedy(inputs, max_new_tokens=8, eos_token_ids=[])


def assert_same_outputs(model_a, processor_a, model_b, processor_b):
    seg_a, gen_a = outputs(model_a, processor_a)
    seg_b, gen_b = outputs(model_b, processor_b)
    assert torch.equal(seg_a, seg_b)
    assert gen_a.token_ids == gen_b.token_ids
    assert torch.equal(gen_a.seg_tokens, gen_b.seg_tokens)


def test_save_pretrained_then_load_gives_identical_outputs(saved):
    model, processor, folder = saved
    loaded, loaded_processor = load_unipixel(folder, device="cpu", dtype="fp32", progress=False)
    assert not loaded.training
    assert loaded.lm_head.weight is loaded.model.language_model.embed_tokens.weight
    assert_same_outputs(model, processor, loaded, loaded_processor)


def test_published_legacy_names_load_identically(saved, tmp_path):
    model, processor, folder = saved
    legacy = copy_of(folder, tmp_path)
    tensors = load_file(str(legacy / "model.safetensors"))
    renamed = {to_legacy_key(k): v for k, v in tensors.items()}
    assert "model.layers.0.mlp.up_proj.weight" in renamed and "visual.merger.ln_q.weight" in renamed
    assert "sam2.memory_encoder.fuser.layers.0.weight" in renamed
    save_file(renamed, str(legacy / "model.safetensors"), metadata={"format": "pt"})
    loaded, loaded_processor = load_unipixel(legacy, dtype="fp32", progress=False)
    assert_same_outputs(model, processor, loaded, loaded_processor)


def test_sharded_checkpoint_loads(tmp_path):
    model, processor = build_tiny_unipixel(seed=4)
    model.save_pretrained(tmp_path, max_shard_size="2MB")
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    loaded, loaded_processor = load_unipixel(tmp_path, dtype="fp32", progress=False)
    assert_same_outputs(model, processor, loaded, loaded_processor)


def test_bfloat16_load_casts_floating_weights_and_runs(saved):
    _, _, folder = saved
    loaded, processor = load_unipixel(folder, dtype="bf16", progress=False)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert loaded.tem_pe.positional_encoding_gaussian_matrix.dtype == torch.bfloat16
    assert loaded.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    seg, generated = outputs(loaded, processor)
    assert seg.dtype == torch.bfloat16 and seg.shape == (2, 2, 256) and len(generated.token_ids) == 8


def test_progress_is_shown(saved, capsys):
    load_unipixel(saved[2], dtype="fp32", progress=True)
    assert "Loading UniPixel weights" in capsys.readouterr().err


def test_missing_and_unexpected_tensors_are_named(saved, tmp_path):
    broken = copy_of(saved[2], tmp_path)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["seg_head.1.bias"]
    tensors["seg_head.9.weight"] = torch.zeros(1)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"1 model parameter\(s\) missing .*seg_head\.1\.bias.*"
                                              r"1 checkpoint tensor\(s\) the model does not have: seg_head\.9\.weight"):
        load_unipixel(broken, dtype="fp32", progress=False)


def test_shape_mismatch_is_named(saved, tmp_path):
    broken = copy_of(saved[2], tmp_path)
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["tem_emb.weight"] = torch.zeros(2, 256)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"tem_emb\.weight has shape \(2, 256\).*\(1, 256\)"):
        load_unipixel(broken, dtype="fp32", progress=False)


def test_wrong_model_type_is_refused(saved, tmp_path):
    other = copy_of(saved[2], tmp_path)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "qwen2_5_vl"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'qwen2_5_vl' model, not a UniPixel"):
        load_unipixel(other, progress=False)


def test_missing_files_are_reported(saved, tmp_path):
    no_config = copy_of(saved[2], tmp_path, "no-config")
    (no_config / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_unipixel(no_config, progress=False)
    no_weights = copy_of(saved[2], tmp_path, "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        load_unipixel(no_weights, progress=False)
    with pytest.raises(CheckpointError, match="is a file"):
        load_unipixel(saved[2] / "config.json", progress=False)


def test_pickled_weights_need_explicit_permission(saved, tmp_path):
    model, processor, folder = saved
    pickled = copy_of(folder, tmp_path)
    tensors = load_file(str(pickled / "model.safetensors"))
    (pickled / "model.safetensors").unlink()
    torch.save(tensors, pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_unipixel(pickled, progress=False)
    loaded, loaded_processor = load_unipixel(pickled, dtype="fp32", allow_pickle=True, progress=False)
    assert_same_outputs(model, processor, loaded, loaded_processor)


def test_hub_id_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="PolyU-ChenLab/UniPixel-does-not-exist"):
        load_unipixel("PolyU-ChenLab/UniPixel-does-not-exist", progress=False)


def test_dtype_names():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float16") is torch.float16
    assert resolve_dtype(torch.float32) is torch.float32
    with pytest.raises(CheckpointError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")
