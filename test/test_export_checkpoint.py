"""Export from a UniPixel-style checkpoint folder: config.json + sharded safetensors, sam2.* inside."""
import json

import pytest
import torch
from safetensors.torch import save_file

from export import export_onnx
from unipixel_ros.decoders.onnx_export import read_decoder_info, weights_fingerprint
from unipixel_ros.decoders.ort_backend import OnnxRuntimeMaskDecoder
from unipixel_ros.decoders.parity import TOLERANCES, random_inputs, run_parity
from unipixel_ros.decoders.torch_backend import TorchMaskDecoder
from unipixel_ros.model.loader import CheckpointError
from unipixel_ros.model.sam2_source import Sam2SourceError, build_sam2_model, load_sam2_from_checkpoint

IMAGE_SIZE = 128


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random SAM 2.1 hiera-t saved the way the published checkpoints store SAM 2: bf16,
    under ``sam2.``, layer-scale ``gamma`` written as ``weight``, beside non-SAM shards."""
    torch.set_num_threads(1)
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("unipixel-ckpt")
    sam2 = build_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml", IMAGE_SIZE)
    saved = {}
    for key, value in sam2.state_dict().items():
        key = key.removesuffix("gamma") + "weight" if key.endswith(".gamma") else key
        saved[f"sam2.{key}"] = value.to(torch.bfloat16).contiguous()
    save_file(saved, str(folder / "model-00002-of-00002.safetensors"))
    save_file({"model.embed_tokens.weight": torch.zeros(4, 4)}, str(folder / "model-00001-of-00002.safetensors"))
    weight_map = {k: "model-00002-of-00002.safetensors" for k in saved}
    weight_map["model.embed_tokens.weight"] = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "pixel_qwen2_5_vl",
                                                    "sam2_config": "configs/sam2.1_hiera_t",
                                                    "sam2_image_size": IMAGE_SIZE}))
    with torch.no_grad():  # what the loader must reproduce: the same weights, rounded to bf16
        for value in sam2.state_dict().values():
            value.copy_(value.to(torch.bfloat16).float())
    return folder, sam2


def test_loader_reads_sam2_weights_exactly(checkpoint):
    folder, reference = checkpoint
    loaded = load_sam2_from_checkpoint(folder)
    assert loaded.image_size == IMAGE_SIZE
    want = reference.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_export_cli_from_checkpoint_matches_torch(checkpoint, tmp_path):
    folder, reference = checkpoint
    out = tmp_path / "decoder.onnx"
    assert export_onnx.main(["--checkpoint", str(folder), "--output", str(out)]) == 0
    info = read_decoder_info(out)
    assert info.weights_fingerprint == weights_fingerprint(reference)
    assert info.shapes.image_size == IMAGE_SIZE
    report = run_parity(TorchMaskDecoder(reference), OnnxRuntimeMaskDecoder(out),
                        random_inputs(reference, 3, seed=0, seed_frame=True))
    assert report.failures(TOLERANCES["fp32"]) == [], report.summary()


def test_unreachable_hub_id_is_a_clear_error():
    with pytest.raises(CheckpointError, match="unipixel-ros-tests/does-not-exist"):
        load_sam2_from_checkpoint("unipixel-ros-tests/does-not-exist")


def test_checkpoint_without_sam2_tensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "pixel_qwen2_5_vl"}))
    save_file({"model.norm.weight": torch.ones(4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(Sam2SourceError, match="holds no 'sam2.\\*' tensors"):
        load_sam2_from_checkpoint(tmp_path)
