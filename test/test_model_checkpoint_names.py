"""The full-size UniPixel-3B / -7B architectures have exactly the published parameter names and shapes.

Built on the meta device from each release's own config (stored in the test data with
the parameter list), so nothing is allocated and no weights are needed.
"""
import json
from pathlib import Path

import pytest
import torch

from unipixel_ros.model.checkpoint_keys import to_legacy_key, to_model_key
from unipixel_ros.model.config import PixelQwen2_5_VLConfig
from unipixel_ros.model.loader import build_empty_model, expected_checkpoint_keys

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module", params=["3b", "7b"])
def release(request):
    published = json.loads((DATA / f"unipixel-{request.param}-parameters.json").read_text())
    model = build_empty_model(PixelQwen2_5_VLConfig(**published["config"]))
    return request.param, published, model


def test_parameter_names_and_shapes_match_the_release(release):
    _, published, model = release
    state = model.state_dict(keep_vars=True)
    ours = {to_legacy_key(k): tuple(state[k].shape) for k in expected_checkpoint_keys(model)}
    theirs = {k: tuple(v["shape"]) for k, v in published["saved"].items()}
    assert len(theirs) == published["num_saved_keys"]
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == []
    assert {k: s for k, s in ours.items() if theirs[k] != s} == {}


def test_lm_head_is_saved_only_when_untied(release):
    size, published, model = release
    tied = size == "3b"
    assert ("lm_head.weight" in published["saved"]) is not tied
    assert ("lm_head.weight" in expected_checkpoint_keys(model)) is not tied


def test_parameters_live_on_meta(release):
    _, _, model = release
    assert {p.device.type for p in model.parameters()} == {"meta"}
    real_buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers() if b.device.type != "meta")
    assert real_buffer_bytes < 1 << 20


def test_key_renaming_round_trips(release):
    _, published, model = release
    for legacy in published["saved"]:
        assert to_legacy_key(to_model_key(legacy)) == legacy
    for key in expected_checkpoint_keys(model):
        assert to_model_key(to_legacy_key(key)) == key
        assert to_model_key(key) == key


def test_key_renaming_examples():
    assert to_model_key("model.layers.3.mlp.up_proj.weight") == "model.language_model.layers.3.mlp.up_proj.weight"
    assert to_model_key("model.embed_tokens.weight") == "model.language_model.embed_tokens.weight"
    assert to_model_key("visual.merger.ln_q.weight") == "model.visual.merger.ln_q.weight"
    assert to_model_key("sam2.memory_encoder.fuser.layers.1.weight") == "sam2.memory_encoder.fuser.layers.1.gamma"
    assert to_model_key("sam2.memory_encoder.fuser.layers.1.norm.weight") == "sam2.memory_encoder.fuser.layers.1.norm.weight"
    assert to_model_key("ref_proj.1.weight") == "ref_proj.1.weight"


def test_release_configs_read_back(release):
    size, published, model = release
    config = model.config
    assert config.model_type == "pixel_qwen2_5_vl"
    assert (config.ref_token_id, config.seg_token_id, config.mem_token_id) == (151665, 151666, 151667)
    assert (config.sam2_image_size, config.sam2_hidden_tokens) == (768, 2)
    assert config.vision_config.tokens_per_second == 2
    assert config.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    assert config.tie_word_embeddings is (size == "3b")
    assert model.sam2.image_size == 768 and model.sam2.sam_image_embedding_size == 48
    assert isinstance(model.tem_pe.positional_encoding_gaussian_matrix, torch.Tensor)


def test_sam2_config_names_resolve_to_pip_sam2_files():
    from unipixel_ros.model.config import Sam2ConfigError, resolve_sam2_config

    assert resolve_sam2_config("configs/sam2.1_hiera_b+") == ("configs/sam2.1/sam2.1_hiera_b+.yaml", ())
    assert resolve_sam2_config("configs/sam2_hiera_l") == ("configs/sam2/sam2_hiera_l.yaml", ())
    assert resolve_sam2_config("configs/sam2.1/sam2.1_hiera_t.yaml") == ("configs/sam2.1/sam2.1_hiera_t.yaml", ())
    with pytest.raises(Sam2ConfigError, match="unknown sam2_config 'sam2.1_hiera_x'"):
        resolve_sam2_config("sam2.1_hiera_x")


def test_the_synthetic_models_sam2_is_the_tiny_one_decoding_one_mask_per_tracked_frame():
    from unipixel_ros.model.config import SYNTHETIC_SAM2_CONFIG, TINY_SAM2_CONFIG, resolve_sam2_config
    from unipixel_ros.model.sam2_source import build_sam2_model
    from unipixel_ros.training.recipe import synthetic_config
    from unipixel_ros.training.tokenizer import build_synthetic_processor

    tiny_file, tiny = resolve_sam2_config(TINY_SAM2_CONFIG)
    synthetic_file, synthetic = resolve_sam2_config(SYNTHETIC_SAM2_CONFIG)
    assert synthetic_file == tiny_file and set(tiny) < set(synthetic)
    assert build_sam2_model(tiny_file, 128, tiny).multimask_output_for_tracking
    assert not build_sam2_model(synthetic_file, 128, synthetic).multimask_output_for_tracking
    assert synthetic_config(build_synthetic_processor().tokenizer).sam2_config == SYNTHETIC_SAM2_CONFIG
